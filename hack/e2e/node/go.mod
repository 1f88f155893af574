// Tools module for the real-node e2e (make e2e-node): stand-ins for the CSI sidecars the module
// proxy refuses, a pause binary, and the image builder. Kept out of the root module on purpose.
module github.com/akv-csi/provider/hack/e2e/node

go 1.26.8

require (
	github.com/container-storage-interface/spec v1.11.0
	github.com/google/go-containerregistry v0.22.1
	google.golang.org/grpc v1.85.0
	k8s.io/kubelet v0.34.4
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
