package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// csiDriverName is the Secrets Store CSI Driver's name in a pod's CSI volume.
const csiDriverName = "secrets-store.csi.k8s.io"

// pods is what the check reads of kubectl get pods -o json.
type pods struct {
	Items []struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec struct {
			ServiceAccountName string `json:"serviceAccountName"`
			Volumes            []struct {
				CSI *struct {
					Driver               string            `json:"driver"`
					VolumeAttributes     map[string]string `json:"volumeAttributes"`
					NodePublishSecretRef *struct {
						Name string `json:"name"`
					} `json:"nodePublishSecretRef"`
				} `json:"csi"`
			} `json:"volumes"`
		} `json:"spec"`
	} `json:"items"`
}

// kubeTargets reads the SecretProviderClasses of this provider and the pods that mount them from
// the cluster (Options.Namespace, or all namespaces), one target per SecretProviderClass and way a
// pod mounts it (service account and nodePublishSecretRef); replicas count once.
func (c *checker) kubeTargets(ctx context.Context) (targets []target, skipped []string, problems []Problem, err error) {
	scope := []string{"--all-namespaces"}
	if c.opts.Namespace != "" {
		scope = []string{"--namespace", c.opts.Namespace}
	}
	out, err := c.kubectl(ctx, append([]string{"get", "secretproviderclasses." + spcGroup, "-o", "json"}, scope...)...)
	if err != nil {
		return nil, nil, nil, err
	}
	src := parseManifest("", out)
	if src.Problem != nil {
		return nil, nil, nil, errors.New("kubectl get secretproviderclasses: " + src.Problem.Message)
	}
	byName := map[string]*spc{}
	for _, s := range src.SPCs {
		// Lines of kubectl's output mean nothing to the operator: name the object instead.
		s.File, s.Line, s.paramsLine, s.paramLines, s.objectLines = "", 0, 0, nil, nil
		for i := range s.Problems {
			s.Problems[i].File, s.Problems[i].Line = "", 0
		}
		byName[s.Namespace+"/"+s.Name] = s
	}
	out, err = c.kubectl(ctx, append([]string{"get", "pods", "-o", "json"}, scope...)...)
	if err != nil {
		return nil, nil, nil, err
	}
	var list pods
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, nil, nil, fmt.Errorf("kubectl get pods: not a list of pods: %w", err)
	}
	used := map[string]bool{}
	seen := map[string]int{} // target key -> index
	for _, p := range list.Items {
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		for _, v := range p.Spec.Volumes {
			if v.CSI == nil || v.CSI.Driver != csiDriverName {
				continue
			}
			name := v.CSI.VolumeAttributes["secretProviderClass"]
			key := p.Metadata.Namespace + "/" + name
			s := byName[key]
			if s == nil {
				if !src.Others[key] {
					problems = append(problems, Problem{Message: fmt.Sprintf("pod %s/%s mounts SecretProviderClass %q, which does not exist in namespace %s",
						p.Metadata.Namespace, p.Metadata.Name, name, p.Metadata.Namespace)})
				}
				continue
			}
			used[key] = true
			ref := ""
			if v.CSI.NodePublishSecretRef != nil {
				ref = v.CSI.NodePublishSecretRef.Name
			}
			tk := key + "\x00" + sa + "\x00" + ref
			if i, ok := seen[tk]; ok {
				targets[i].pods++
				continue
			}
			seen[tk] = len(targets)
			targets = append(targets, target{spc: s, pods: 1,
				pod: &podUse{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, ServiceAccount: sa, NodePublishSecretRef: ref}})
		}
	}
	var unused []string
	for key := range byName {
		if !used[key] {
			unused = append(unused, key)
		}
	}
	sort.Strings(unused)
	for _, key := range unused {
		targets = append(targets, target{spc: byName[key]})
	}
	return targets, sortedSkips(src.Skipped), problems, nil
}
