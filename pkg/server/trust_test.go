package server

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/provider"
)

const validAttrs = `{"keyvaultName":"kv-demo","tenantId":"t","useVMManagedIdentity":"true","objects":"array:\n  - |\n    objectName: a\n    objectType: secret\n"}`

// panicOnce panics on its first mount only.
type panicOnce struct{ calls atomic.Int32 }

func (p *panicOnce) Mount(context.Context, config.MountConfig) (provider.Result, error) {
	if p.calls.Add(1) == 1 {
		panic("boom")
	}
	return provider.Result{Files: []provider.File{{Path: "a", Mode: 0o600, Contents: []byte("x")}}}, nil
}

// TestPanicIsInternalAndServingGoesOn: through the real gRPC server, a panicking mount answers
// Internal and the next mount on the same connection succeeds.
func TestPanicIsInternalAndServingGoesOn(t *testing.T) {
	t.Parallel()
	socket, _ := serve(t, &panicOnce{})
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := v1alpha1.NewCSIDriverProviderClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &v1alpha1.MountRequest{Attributes: validAttrs, Permission: "420"}
	_, err = c.Mount(ctx, req)
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "internal error") {
		t.Errorf("a panicking mount: %v, want Internal", err)
	}
	if resp, err := c.Mount(ctx, req); err != nil || len(resp.GetFiles()) != 1 {
		t.Errorf("the mount after a panic: %v", err)
	}
}

// bigMounter returns files of the given sizes.
type bigMounter []int

func (b bigMounter) Mount(context.Context, config.MountConfig) (provider.Result, error) {
	var r provider.Result
	for i, n := range b {
		r.Files = append(r.Files, provider.File{Path: "file-" + string(rune('a'+i)), Mode: 0o600, Contents: make([]byte, n)})
	}
	return r, nil
}

// TestResponseTooLarge: a response over the limit is ResourceExhausted naming the largest files
// and the flag, not a response the driver would reject with an opaque error.
func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	svc := NewService(bigMounter{100, 3000, 50, 2000}, config.Defaults{}, nil)
	svc.MaxResponseBytes = 4000
	_, err := svc.Mount(context.Background(), &v1alpha1.MountRequest{Attributes: validAttrs, Permission: "420"})
	st := status.Convert(err)
	for _, want := range []string{"file-b (3000 bytes), file-d (2000 bytes), file-a (100 bytes)", "--max-response-bytes", "more than the 4000 bytes"} {
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), want) {
			t.Errorf("over the limit: %v; want ResourceExhausted with %q", err, want)
		}
	}
	svc.MaxResponseBytes = 6000
	if _, err := svc.Mount(context.Background(), &v1alpha1.MountRequest{Attributes: validAttrs, Permission: "420"}); err != nil {
		t.Errorf("under the limit: %v", err)
	}
}

// TestParseFailureIsLoggedWithPodAndVault: a request that fails validation still names its pod and
// vault (the log line an operator greps for).
func TestParseFailureNamesPodAndVault(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(`{"keyvaultName":"kv-demo","csi.storage.k8s.io/pod.namespace":"ns","csi.storage.k8s.io/pod.name":"web-1"}`, "", "420", config.Defaults{})
	if err == nil || cfg.VaultName != "kv-demo" || cfg.Pod.String() != "ns/web-1" {
		t.Errorf("a failed parse gave %v, %q, %q", err, cfg.VaultName, cfg.Pod)
	}
}
