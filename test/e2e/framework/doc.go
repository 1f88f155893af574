//go:build e2e

// Package framework runs a hermetic Kubernetes node on loopback for the e2e tests: etcd,
// kube-apiserver, the real secrets-store-csi-driver, our provider and the Key Vault emulator.
// The test plays the kubelet: it creates the API objects and calls the driver's CSI node
// service over its unix socket, as kubelet does for an inline CSI volume.
//
// Every process and mount is owned by the *testing.T that started it and is stopped or
// unmounted in t.Cleanup, also when the test fails. Component logs go to files under the
// test's temporary directory; they are printed (tail) when the test fails and copied to
// $E2E_ARTIFACTS_DIR/<test> when that variable is set.
//
// Binaries are found through environment variables that hack/e2e/run.sh sets; see Config.
package framework
