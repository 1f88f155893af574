package server

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// teeConn copies what the server sends into w.
type teeConn struct {
	net.Conn
	w io.Writer
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	_, _ = c.w.Write(p[:n])
	return n, err
}

// TestNoPingsPerMount: the server starts no HTTP/2 ping of its own while serving mounts (gRPC's
// bandwidth estimation, off with a fixed receive window, pinged with every request and woke the
// reader for the answer), and it still answers the driver's pings.
func TestNoPingsPerMount(t *testing.T) {
	t.Parallel()
	socket, _ := serve(t, bigMounter{64})

	pr, pw := io.Pipe()
	var mu sync.Mutex
	var pings, acks int
	framesDone := make(chan struct{})
	go func() {
		defer close(framesDone)
		fr := http2.NewFramer(nil, pr)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok {
				mu.Lock()
				if p.IsAck() {
					acks++
				} else {
					pings++
				}
				mu.Unlock()
			}
		}
	}()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
			return teeConn{c, pw}, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	c := v1alpha1.NewCSIDriverProviderClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const mounts = 20
	for range mounts {
		if _, err := c.Mount(ctx, &v1alpha1.MountRequest{Attributes: validAttrs, Permission: "420"}); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	_ = pw.Close()
	<-framesDone
	mu.Lock()
	defer mu.Unlock()
	if pings != 0 {
		t.Errorf("the server sent %d pings in %d mounts, want none", pings, mounts)
	}
	if acks == 0 {
		t.Errorf("the server answered none of the client's pings")
	}
}
