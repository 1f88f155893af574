//go:build windows

package server

import (
	"errors"
	"net"
	"syscall"
)

// On Windows the endpoint is an AF_UNIX socket too (Windows 10 1803 and later; the driver
// dials unix sockets there as well), not a named pipe, so Listen's protections apply as on
// Linux: a live socket is not replaced (a dial that is accepted), only one that refuses the
// connection is removed, and Close and /healthz compare the socket file's identity (volume serial
// number and file index, which os.SameFile reads) with the one this provider created. What does
// not carry over is the owner-only mode: Windows has no umask, so who may connect is the ACL of
// the providers directory.

// listenOwnerOnly relies on the ACL of the providers directory on Windows.
func listenOwnerOnly(address string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: address, Net: "unix"})
}

// wsaeconnrefused is Winsock's "connection refused" (WSAECONNREFUSED), which a connect to a socket
// file that no process listens on returns; syscall.ECONNREFUSED is a different, invented number
// on Windows.
const wsaeconnrefused = syscall.Errno(10061)

// connectionRefused reports a dial to a socket file that no process listens on: a stale socket.
func connectionRefused(err error) bool {
	return errors.Is(err, wsaeconnrefused) || errors.Is(err, syscall.ECONNREFUSED)
}
