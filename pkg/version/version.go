// Package version holds the build information stamped in by the linker.
package version

import (
	"encoding/json"
	"runtime"
)

// Set with -ldflags "-X github.com/akv-csi/provider/pkg/version.BuildVersion=...".
var (
	BuildVersion = "dev"
	GitCommit    = "unknown"
	BuildDate    = "unknown"
)

// Info is the build information printed by --version and logged at start.
type Info struct {
	Version   string `json:"version"`
	GitCommit string `json:"gitCommit"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build information of this binary.
func Get() Info {
	return Info{
		Version:   BuildVersion,
		GitCommit: GitCommit,
		BuildDate: BuildDate,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// JSON renders the build information as one line of JSON.
func JSON() string {
	b, _ := json.Marshal(Get()) // a struct of strings always marshals
	return string(b)
}

// UserAgent identifies this provider in requests to Key Vault and Entra ID.
func UserAgent() string {
	return "akv-csi-provider/" + BuildVersion
}
