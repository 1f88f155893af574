//go:build !windows

package server

import (
	"errors"
	"net"
	"syscall"
)

// listenOwnerOnly creates the socket under umask 0077 so only its owner can connect. The umask is
// process-wide, but this runs once at start, before anything else creates files.
func listenOwnerOnly(address string) (*net.UnixListener, error) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	return net.ListenUnix("unix", &net.UnixAddr{Name: address, Net: "unix"})
}

// connectionRefused reports a dial to a socket file that no process listens on: a stale socket.
func connectionRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
