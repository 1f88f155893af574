//go:build e2e

package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Kube is a small JSON client for the apiserver. The e2e tests live in the root module, which
// must not depend on client-go; the handful of calls the kubelet simulation needs are plain REST.
type Kube struct {
	base  string
	token string
	hc    *http.Client
}

// Object is an untyped Kubernetes object.
type Object = map[string]any

// APIError is a non-2xx answer from the apiserver.
type APIError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Code, strings.TrimSpace(e.Body))
}

// IsNotFound reports whether err is an APIError with code 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

// IsConflict reports whether err is an APIError with code 409 (e.g. AlreadyExists).
func IsConflict(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == http.StatusConflict
}

// NewKube returns a client that trusts caFile and authenticates with a bearer token.
func NewKube(base, caFile, token string) (*Kube, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificates in %s", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 32}
	return &Kube{base: base, token: token, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// WithToken returns a client that authenticates with another bearer token.
func (k *Kube) WithToken(token string) *Kube {
	c := *k
	c.token = token
	return &c
}

// Raw sends a request and returns the body of a 2xx answer.
func (k *Kube) Raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	return k.raw(ctx, method, path, "application/json", body)
}

func (k *Kube) raw(ctx context.Context, method, path, contentType string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Method: method, Path: path, Code: resp.StatusCode, Body: string(b)}
	}
	return b, nil
}

// Do sends body (if not nil) as JSON and decodes a 2xx answer into out (if not nil).
func (k *Kube) Do(ctx context.Context, method, path string, body, out any) error {
	b, err := k.Raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Create POSTs obj to the collection at path and decodes the result into out (if not nil).
func (k *Kube) Create(ctx context.Context, path string, obj, out any) error {
	return k.Do(ctx, http.MethodPost, path, obj, out)
}

// Get GETs path into out.
func (k *Kube) Get(ctx context.Context, path string, out any) error {
	return k.Do(ctx, http.MethodGet, path, nil, out)
}

// Delete deletes the object at path; a 404 is not an error.
func (k *Kube) Delete(ctx context.Context, path string) error {
	err := k.Do(ctx, http.MethodDelete, path, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// MergePatch applies a JSON merge patch.
func (k *Kube) MergePatch(ctx context.Context, path string, patch, out any) error {
	b, err := k.raw(ctx, http.MethodPatch, path, "application/merge-patch+json", patch)
	if err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// ApplyYAMLFile creates every object of a (multi-document) YAML file. It knows the paths of the
// few kinds the tests need.
func (k *Kube) ApplyYAMLFile(ctx context.Context, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		var obj Object
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if len(obj) == 0 {
			continue
		}
		path, err := CollectionPath(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if err := k.Create(ctx, path, obj, nil); err != nil && !IsConflict(err) {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	return nil
}

// CollectionPath returns the REST collection path of obj's kind (and namespace).
func CollectionPath(obj Object) (string, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	info, ok := kinds[kind]
	if !ok {
		return "", fmt.Errorf("unknown kind %q", kind)
	}
	prefix := "/apis/" + apiVersion
	if apiVersion == "v1" {
		prefix = "/api/v1"
	}
	if info.namespaced {
		if ns == "" {
			ns = "default"
		}
		return prefix + "/namespaces/" + ns + "/" + info.plural, nil
	}
	return prefix + "/" + info.plural, nil
}

type kindInfo struct {
	plural     string
	namespaced bool
}

var kinds = map[string]kindInfo{
	"Namespace": {"namespaces", false}, "CustomResourceDefinition": {"customresourcedefinitions", false},
	"CSIDriver": {"csidrivers", false}, "ClusterRole": {"clusterroles", false}, "ClusterRoleBinding": {"clusterrolebindings", false},
	"ServiceAccount": {"serviceaccounts", true}, "Secret": {"secrets", true}, "Pod": {"pods", true},
	"ConfigMap": {"configmaps", true}, "SecretProviderClass": {"secretproviderclasses", true},
	"SecretProviderClassPodStatus": {"secretproviderclasspodstatuses", true}, "Deployment": {"deployments", true},
	"ReplicaSet": {"replicasets", true}, "DaemonSet": {"daemonsets", true}, "Event": {"events", true},
	"Role": {"roles", true}, "RoleBinding": {"rolebindings", true},
}
