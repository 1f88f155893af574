package server

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/provider"
)

type panicMounter struct{}

func (panicMounter) Mount(context.Context, config.MountConfig) (provider.Result, error) {
	panic("boom")
}

// TestObserveCalls: every unary call of the server reaches the observer with its method and
// code (grpc_request), a recovered panic as Internal.
func TestObserveCalls(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	observe := func(method string, c codes.Code, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, method+" "+c.String())
	}
	for _, m := range []Mounter{stubMounter{err: errors.New("boom")}, panicMounter{}} {
		l, err := Listen("unix://" + filepath.Join(t.TempDir(), "azure.sock"))
		if err != nil {
			t.Fatal(err)
		}
		g := NewGRPC(NewService(m, config.Defaults{}, nil), 0, observe)
		go func() { _ = g.Server.Serve(l) }()
		t.Cleanup(g.Server.Stop)
		conn, err := grpc.NewClient("passthrough:///localhost", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", l.Addr().String())
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		ctx := context.Background()
		_, _ = v1alpha1.NewCSIDriverProviderClient(conn).Version(ctx, &v1alpha1.VersionRequest{})
		_, _ = v1alpha1.NewCSIDriverProviderClient(conn).Mount(ctx, &v1alpha1.MountRequest{
			Attributes: `{"keyvaultName":"kv-demo","tenantId":"t","useVMManagedIdentity":"true","objects":"array:\n  - |\n    objectName: a\n    objectType: secret\n"}`,
			Permission: "420"})
		_, _ = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	}
	want := []string{
		"/v1alpha1.CSIDriverProvider/Version OK", "/v1alpha1.CSIDriverProvider/Mount Internal", "/grpc.health.v1.Health/Check OK",
		"/v1alpha1.CSIDriverProvider/Version OK", "/v1alpha1.CSIDriverProvider/Mount Internal", "/grpc.health.v1.Health/Check OK",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed calls (-want +got):\n%s", diff)
	}
}
