// Command pause is the pod sandbox image (registry.k8s.io/pause): it blocks until SIGTERM or
// SIGINT and reaps nothing (the sandbox's containers have their own PID namespaces here).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
