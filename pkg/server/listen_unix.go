//go:build !windows

package server

import (
	"net"
	"syscall"
)

// listenOwnerOnly creates the socket under umask 0077 so only its owner can connect. The umask is
// process-wide, but this runs once at start, before anything else creates files.
func listenOwnerOnly(address string) (net.Listener, error) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	return net.Listen("unix", address)
}
