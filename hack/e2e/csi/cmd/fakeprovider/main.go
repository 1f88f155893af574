// Command fakeprovider serves the driver's own fake provider on a unix socket. The e2e harness
// uses it to check the stack (etcd, kube-apiserver, driver, simulated kubelet) independently of
// our provider.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/secrets-store-csi-driver/provider/fake"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", "", "unix socket path, e.g. <providers dir>/fake.sock")
	flag.Parse()
	if *socket == "" {
		return fmt.Errorf("--socket is required")
	}
	s, err := fake.NewMocKCSIProviderServer(*socket)
	if err != nil {
		return err
	}
	s.SetFiles([]*v1alpha1.File{
		{Path: "foo", Mode: 0o644, Contents: []byte("foo-value")},
		{Path: "bar", Mode: 0o600, Contents: []byte("bar-value")},
	})
	s.SetObjects(map[string]string{"secret/foo": "v1", "secret/bar": "v1"})
	if err := s.Start(); err != nil {
		return err
	}
	fmt.Println("fakeprovider: serving on", *socket)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Stop()
	return nil
}
