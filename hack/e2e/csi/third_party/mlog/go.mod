// Stand-in for monis.app/mlog, which the module proxy here refuses for every version.
// The secrets-store-csi-driver only uses the functions below from cmd/ main, the gRPC server
// and the rotation reconciler. --log-format-json has no effect with this stand-in.
module monis.app/mlog

go 1.24

require k8s.io/klog/v2 v2.80.1
