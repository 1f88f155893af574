// Command registrar stands in for registry.k8s.io/sig-storage/csi-node-driver-registrar, which
// the Go module proxy refuses to serve (403): it asks the CSI driver for its name, serves the
// kubelet's plugin registration API (k8s.io/kubelet pluginregistration/v1) on
// /registration/<name>-reg.sock, and tells the kubelet where the driver's socket is on the host.
// It accepts the flags the secrets-store-csi-driver chart passes. Test use only.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registrar struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint, SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !s.PluginRegistered {
		// The real registrar exits so that the kubelet retries after a restart.
		log.Fatalf("kubelet refused the registration of %s: %s", r.name, s.Error)
	}
	log.Printf("kubelet registered %s at %s", r.name, r.endpoint)
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	csiAddress := flag.String("csi-address", "/csi/csi.sock", "the CSI driver's socket inside this container")
	hostPath := flag.String("kubelet-registration-path", "", "the CSI driver's socket on the host, as the kubelet dials it")
	regDir := flag.String("plugin-registration-path", "/registration", "the kubelet's plugins_registry directory")
	flag.Int("v", 0, "ignored (accepted for the chart's args)")
	flag.Parse()
	if *hostPath == "" {
		log.Fatal("--kubelet-registration-path is required")
	}
	name := driverName(*csiAddress)
	sock := filepath.Join(*regDir, name+"-reg.sock")
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		log.Fatal(err)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &registrar{name: name, endpoint: *hostPath})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Stop()
		_ = os.Remove(sock)
		os.Exit(0)
	}()
	log.Printf("serving plugin registration for %s on %s", name, sock)
	if err := srv.Serve(lis); err != nil {
		log.Fatal(err)
	}
}

// driverName asks the CSI driver for its name, retrying until it answers (it may start later).
func driverName(addr string) string {
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		cancel()
		if err == nil {
			return info.GetName()
		}
		log.Printf("waiting for the CSI driver at %s: %v", addr, err)
		time.Sleep(time.Second)
	}
}
