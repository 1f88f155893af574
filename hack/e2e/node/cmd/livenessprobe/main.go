// Command livenessprobe stands in for registry.k8s.io/sig-storage/livenessprobe, which the Go
// module proxy refuses to serve (403): GET /healthz calls CSI Probe on the driver's socket and
// answers 200 when the driver says it is ready, 500 otherwise. It accepts the flags the
// secrets-store-csi-driver chart passes. Test use only.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	csiAddress := flag.String("csi-address", "/csi/csi.sock", "the CSI driver's socket")
	timeout := flag.Duration("probe-timeout", time.Second, "timeout of one CSI Probe call")
	endpoint := flag.String("http-endpoint", ":9808", "address of the /healthz endpoint")
	flag.Int("v", 0, "ignored (accepted for the chart's args)")
	flag.Parse()
	conn, err := grpc.NewClient("unix://"+*csiAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), *timeout)
		defer cancel()
		if err := probe(ctx, conn); err != nil {
			log.Printf("probe failed: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	log.Printf("serving /healthz on %s for %s", *endpoint, *csiAddress)
	log.Fatal(http.ListenAndServe(*endpoint, nil))
}

func probe(ctx context.Context, conn *grpc.ClientConn) error {
	res, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{})
	if err != nil {
		return err
	}
	if r := res.GetReady(); r != nil && !r.GetValue() {
		return fmt.Errorf("driver not ready")
	}
	return nil
}
