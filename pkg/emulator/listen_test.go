package emulator

import "testing"

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:0": true, "[::1]:0": true, "localhost:8443": true, "192.0.2.2:0": true,
		"0.0.0.0:0": false, ":0": false, "10.0.0.1:0": false, "192.0.3.1:0": false, "[::]:0": false, "example.com:443": false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want allowed=%v", addr, err, ok)
		}
	}
}
