//go:build windows

package server

import "net"

// listenOwnerOnly relies on the ACL of the providers directory on Windows.
func listenOwnerOnly(address string) (net.Listener, error) {
	return net.Listen("unix", address)
}
