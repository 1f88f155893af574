//go:build e2e

package framework

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Kubelet plays the kubelet's part for inline CSI volumes: it reads the Pod and the CSIDriver
// from the apiserver, requests service-account tokens for the CSIDriver's tokenRequests, reads
// the nodePublishSecretRef Secret and calls NodePublishVolume on a kubelet-style target path.
type Kubelet struct {
	Root   string // <root>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount
	NodeID string
	Kube   *Kube
	CSI    *CSIClient
	t      testing.TB
	mu     sync.Mutex
	live   map[string]*Mount // by target path
}

// NewKubelet returns a kubelet simulation rooted at a fresh directory. In t.Cleanup every
// volume it published and did not unpublish is unpublished; a mount that is still there after
// that is force-unmounted and fails the test.
func NewKubelet(t testing.TB, nodeID string, k *Kube, csi *CSIClient) *Kubelet {
	t.Helper()
	kl := &Kubelet{Root: TempDir(t, "", "e2e-kubelet-"), NodeID: nodeID, Kube: k, CSI: csi, t: t, live: map[string]*Mount{}}
	t.Cleanup(kl.cleanup)
	return kl
}

// Mount is a published volume.
type Mount struct {
	Pod        Pod
	Volume     string
	VolumeID   string
	TargetPath string
	// Context is the volume context sent to the driver (tokens redacted).
	Context map[string]string
}

// File reads a file of the mount.
func (m *Mount) File(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(m.TargetPath, name))
	return string(b), err
}

// TargetPath returns the kubelet layout for a pod volume.
func (kl *Kubelet) TargetPath(podUID, volume string) string {
	return filepath.Join(kl.Root, "pods", podUID, "volumes", "kubernetes.io~csi", volume, "mount")
}

// Publish publishes the pod's CSI volume (DefaultVolume if volume is empty) the way kubelet
// does. It returns the driver's error (a gRPC status) unchanged.
func (kl *Kubelet) Publish(ctx context.Context, pod Pod, volume string) (*Mount, error) {
	if volume == "" {
		volume = DefaultVolume
	}
	var p struct {
		Metadata struct{ Name, Namespace, UID string }
		Spec     struct {
			ServiceAccountName string
			Volumes            []struct {
				Name string
				CSI  *struct {
					Driver               string
					ReadOnly             *bool
					VolumeAttributes     map[string]string
					NodePublishSecretRef *struct{ Name string }
				}
			}
		}
	}
	if err := kl.Kube.Get(ctx, "/api/v1/namespaces/"+pod.Namespace+"/pods/"+pod.Name, &p); err != nil {
		return nil, err
	}
	var vol *struct {
		Driver               string
		ReadOnly             *bool
		VolumeAttributes     map[string]string
		NodePublishSecretRef *struct{ Name string }
	}
	for _, v := range p.Spec.Volumes {
		if v.Name == volume && v.CSI != nil {
			vol = v.CSI
		}
	}
	if vol == nil {
		return nil, fmt.Errorf("pod %s/%s has no CSI volume %q", pod.Namespace, pod.Name, volume)
	}
	var drv struct {
		Spec struct {
			PodInfoOnMount *bool
			TokenRequests  []struct {
				Audience          string
				ExpirationSeconds *int64
			}
		}
	}
	if err := kl.Kube.Get(ctx, "/apis/storage.k8s.io/v1/csidrivers/"+vol.Driver, &drv); err != nil {
		return nil, fmt.Errorf("get CSIDriver %s: %w", vol.Driver, err)
	}

	volCtx := map[string]string{}
	for k, v := range vol.VolumeAttributes {
		volCtx[k] = v
	}
	if drv.Spec.PodInfoOnMount != nil && *drv.Spec.PodInfoOnMount {
		volCtx["csi.storage.k8s.io/pod.name"] = p.Metadata.Name
		volCtx["csi.storage.k8s.io/pod.namespace"] = p.Metadata.Namespace
		volCtx["csi.storage.k8s.io/pod.uid"] = p.Metadata.UID
		volCtx["csi.storage.k8s.io/serviceAccount.name"] = p.Spec.ServiceAccountName
		volCtx["csi.storage.k8s.io/ephemeral"] = "true"
	}
	if len(drv.Spec.TokenRequests) > 0 {
		tokens := map[string]any{}
		for _, tr := range drv.Spec.TokenRequests {
			tok, exp, err := kl.TokenRequest(ctx, p.Metadata.Namespace, p.Spec.ServiceAccountName, tr.Audience, tr.ExpirationSeconds, &pod)
			if err != nil {
				return nil, err
			}
			tokens[tr.Audience] = map[string]string{"token": tok, "expirationTimestamp": exp}
		}
		b, err := json.Marshal(tokens)
		if err != nil {
			return nil, err
		}
		volCtx["csi.storage.k8s.io/serviceAccount.tokens"] = string(b)
	}
	var secrets map[string]string
	if vol.NodePublishSecretRef != nil {
		s, err := GetSecret(ctx, kl.Kube, p.Metadata.Namespace, vol.NodePublishSecretRef.Name)
		if err != nil {
			return nil, fmt.Errorf("nodePublishSecretRef: %w", err)
		}
		secrets = map[string]string{}
		for k := range s.Data {
			if secrets[k], err = s.Value(k); err != nil {
				return nil, err
			}
		}
	}

	m := &Mount{Pod: pod, Volume: volume, TargetPath: kl.TargetPath(p.Metadata.UID, volume)}
	sum := sha256.Sum256([]byte(p.Metadata.UID + volume + vol.Driver))
	m.VolumeID = "csi-" + hex.EncodeToString(sum[:])
	// kubelet creates the volume directory and leaves the mount point to the driver.
	if err := os.MkdirAll(filepath.Dir(m.TargetPath), 0o750); err != nil {
		return nil, err
	}
	m.Context = redactTokens(volCtx)
	kl.mu.Lock()
	kl.live[m.TargetPath] = m
	kl.mu.Unlock()
	readOnly := vol.ReadOnly != nil && *vol.ReadOnly
	err := kl.CSI.NodePublishVolume(ctx, PublishRequest{VolumeID: m.VolumeID, TargetPath: m.TargetPath, Readonly: readOnly, VolumeContext: volCtx, Secrets: secrets})
	if err != nil {
		kl.failedMountEvent(ctx, p.Metadata.Namespace, p.Metadata.Name, p.Metadata.UID, volume, err)
		return nil, err
	}
	return m, nil
}

// failedMountEvent records a Warning FailedMount event on the pod, worded as kubelet's
// operation executor words it; this is what `kubectl describe pod` shows a user.
func (kl *Kubelet) failedMountEvent(ctx context.Context, ns, pod, uid, volume string, cause error) {
	now := time.Now().UTC().Format(time.RFC3339)
	ev := Object{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       Object{"generateName": pod + ".", "namespace": ns},
		"involvedObject": Object{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod, "uid": uid},
		"reason":         "FailedMount", "type": "Warning",
		"message":        fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", volume, cause),
		"source":         Object{"component": "kubelet", "host": kl.NodeID},
		"firstTimestamp": now, "lastTimestamp": now, "count": 1,
	}
	if err := kl.Kube.Create(ctx, "/api/v1/namespaces/"+ns+"/events", ev, nil); err != nil {
		kl.t.Logf("record FailedMount event: %v", err)
	}
}

// Unpublish calls NodeUnpublishVolume and checks the target is no longer a mount point.
func (kl *Kubelet) Unpublish(ctx context.Context, m *Mount) error {
	if err := kl.CSI.NodeUnpublishVolume(ctx, m.VolumeID, m.TargetPath); err != nil {
		return fmt.Errorf("NodeUnpublishVolume %s: %w", m.TargetPath, err)
	}
	if mounted, err := IsMountPoint(m.TargetPath); err != nil || mounted {
		if err != nil {
			return fmt.Errorf("after NodeUnpublishVolume %s: %w", m.TargetPath, err)
		}
		return fmt.Errorf("after NodeUnpublishVolume %s is still mounted", m.TargetPath)
	}
	kl.mu.Lock()
	delete(kl.live, m.TargetPath)
	kl.mu.Unlock()
	return nil
}

func (kl *Kubelet) cleanup() {
	kl.mu.Lock()
	live := make([]*Mount, 0, len(kl.live))
	for _, m := range kl.live {
		live = append(live, m)
	}
	kl.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, m := range live {
		if err := kl.Unpublish(ctx, m); err != nil {
			kl.t.Errorf("cleanup: %v", err)
		}
	}
	// Whatever is still mounted below the root (the driver died, unpublish failed) is
	// detached so nothing leaks past the test.
	leftovers, err := MountsUnder(kl.Root)
	if err != nil {
		kl.t.Errorf("cleanup: read mounts: %v", err)
	}
	for i := len(leftovers) - 1; i >= 0; i-- {
		kl.t.Errorf("cleanup: %s still mounted; detaching", leftovers[i])
		if err := syscall.Unmount(leftovers[i], syscall.MNT_DETACH); err != nil {
			kl.t.Errorf("cleanup: unmount %s: %v", leftovers[i], err)
		}
	}
}

// TokenRequest requests a service-account token, bound to pod when it is not nil, as kubelet
// does for CSIDriver.spec.tokenRequests. It returns the token and its expiry (RFC 3339).
func (kl *Kubelet) TokenRequest(ctx context.Context, ns, sa, audience string, expirationSeconds *int64, pod *Pod) (string, string, error) {
	exp := int64(3600)
	if expirationSeconds != nil {
		exp = *expirationSeconds
	}
	spec := Object{"audiences": []string{audience}, "expirationSeconds": exp}
	if pod != nil {
		spec["boundObjectRef"] = Object{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": pod.UID}
	}
	req := Object{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
	var out struct {
		Status struct {
			Token               string
			ExpirationTimestamp string
		}
	}
	if err := kl.Kube.Create(ctx, "/api/v1/namespaces/"+ns+"/serviceaccounts/"+sa+"/token", req, &out); err != nil {
		return "", "", fmt.Errorf("TokenRequest for %s/%s audience %s: %w", ns, sa, audience, err)
	}
	return out.Status.Token, out.Status.ExpirationTimestamp, nil
}

func redactTokens(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k == "csi.storage.k8s.io/serviceAccount.tokens" {
			v = "<redacted>"
		}
		out[k] = v
	}
	return out
}

// JWTClaims decodes the claims of a JWT without verifying it.
func JWTClaims(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(b, &c)
}

// MountsUnder lists mount points at or below dir, from /proc/self/mountinfo.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// IsMountPoint reports whether path is a mount point.
func IsMountPoint(path string) (bool, error) {
	mounts, err := MountsUnder(path)
	if err != nil {
		return false, err
	}
	for _, m := range mounts {
		if m == path {
			return true, nil
		}
	}
	return false, nil
}

// FSType returns the file system type of the mount at path ("" if path is not a mount point).
func FSType(path string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 || unescapeMountinfo(fields[4]) != path {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				return fields[i+1], nil
			}
		}
	}
	return "", nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
