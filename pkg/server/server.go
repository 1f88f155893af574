// Package server is the gRPC face of the provider: the driver's CSIDriverProvider service and the
// gRPC health service on a unix socket, the mapping of failures to gRPC codes, and /healthz.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/provider"
	"github.com/akv-csi/provider/pkg/version"
)

// RuntimeName is reported to the driver by Version.
const RuntimeName = "akv-csi-provider"

// Mounter runs a validated mount.
type Mounter interface {
	Mount(ctx context.Context, cfg config.MountConfig) (provider.Result, error)
}

// MountObserver records the outcome of each Mount call (metrics).
type MountObserver func(code codes.Code, d time.Duration)

// DefaultMaxResponseBytes is the default bound on a MountResponse: the driver's default
// --max-call-recv-msg-size, past which it rejects the response with an opaque gRPC error.
const DefaultMaxResponseBytes = 4 << 20

// Service implements the driver's CSIDriverProvider service.
type Service struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	mounter  Mounter
	defaults config.Defaults
	observe  MountObserver
	// memo keeps the parsed objects of recent SecretProviderClasses (rotation polls and replicas
	// send the same objects parameter again and again).
	memo *config.Memo
	// MaxResponseBytes bounds the encoded MountResponse (--max-response-bytes).
	MaxResponseBytes int
}

// NewService returns the CSIDriverProvider service. observe may be nil.
func NewService(m Mounter, d config.Defaults, observe MountObserver) *Service {
	if observe == nil {
		observe = func(codes.Code, time.Duration) {}
	}
	return &Service{mounter: m, defaults: d, observe: observe, memo: config.NewMemo(0), MaxResponseBytes: DefaultMaxResponseBytes}
}

// Version reports the provider API version and this build.
func (s *Service) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: RuntimeName, RuntimeVersion: version.BuildVersion}, nil
}

// Mount validates the request, reads every object and returns the files, or one status that names
// every failed object.
func (s *Service) Mount(ctx context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	start := time.Now()
	cfg, err := s.memo.Parse(req.GetAttributes(), req.GetSecrets(), req.GetPermission(), s.defaults)
	if err != nil {
		st := status.New(codes.InvalidArgument, "invalid SecretProviderClass parameters: "+flatten(err))
		s.finish(cfg, st, start)
		return nil, st.Err()
	}
	cfg.Rotation = len(req.GetCurrentObjectVersion()) > 0
	ctx, cancel := reserveAnswerTime(ctx)
	defer cancel()
	res, err := s.mounter.Mount(ctx, cfg)
	if err != nil {
		st := status.New(codeOf(err), err.Error())
		s.finish(cfg, st, start)
		return nil, st.Err()
	}
	resp := &v1alpha1.MountResponse{}
	for _, f := range res.Files {
		resp.Files = append(resp.Files, &v1alpha1.File{Path: f.Path, Mode: int32(f.Mode & fs.ModePerm), Contents: f.Contents})
	}
	for _, v := range res.Versions {
		resp.ObjectVersion = append(resp.ObjectVersion, &v1alpha1.ObjectVersion{Id: v.ID, Version: v.Version})
	}
	if size := proto.Size(resp); size > s.MaxResponseBytes {
		st := status.New(codes.ResourceExhausted, tooLarge(res.Files, size, s.MaxResponseBytes))
		s.finish(cfg, st, start)
		return nil, st.Err()
	}
	s.finish(cfg, status.New(codes.OK, ""), start)
	return resp, nil
}

// reserveAnswerTime ends the mount's work a little before the driver's deadline (a tenth of the
// time left, at most 1s), so the driver receives the provider's actionable error instead of its
// own "context deadline exceeded".
func reserveAnswerTime(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	margin := min(time.Until(deadline)/10, time.Second)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// tooLarge says which files make a response too large for the driver.
func tooLarge(files []provider.File, size, limit int) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b provider.File) int { return len(b.Contents) - len(a.Contents) })
	var largest []string
	for _, f := range sorted[:min(3, len(sorted))] {
		largest = append(largest, fmt.Sprintf("%s (%d bytes)", f.Path, len(f.Contents)))
	}
	return fmt.Sprintf("the mount's %d files add up to a %d-byte response, more than the %d bytes the driver accepts (--max-response-bytes, "+
		"the driver's --max-call-recv-msg-size); largest: %s: mount fewer or smaller objects (objectVersionHistory counts each version), "+
		"or raise both limits together", len(files), size, limit, strings.Join(largest, ", "))
}

func (s *Service) finish(cfg config.MountConfig, st *status.Status, start time.Time) {
	d := time.Since(start)
	s.observe(st.Code(), d)
	kv := []any{"pod", klog.KRef(cfg.Pod.Namespace, cfg.Pod.Name), "vault", cfg.VaultName, "identityMode", cfg.Identity.Mode.String(),
		"clientID", cfg.Identity.ClientID, "tenantID", cfg.TenantID, "objects", len(cfg.Objects), "grpcCode", st.Code().String(), "duration", d}
	if len(cfg.Warnings) > 0 {
		// What Azure's provider accepts silently (a misspelt field, mode bits it never writes):
		// mounted as there, and said once per mount.
		klog.InfoS("warning: the SecretProviderClass has settings that are ignored", "pod", klog.KRef(cfg.Pod.Namespace, cfg.Pod.Name),
			"vault", cfg.VaultName, "warnings", cfg.Warnings)
	}
	if st.Code() != codes.OK {
		klog.ErrorS(nil, "mount failed", append(kv, "error", st.Message())...)
		return
	}
	klog.V(2).InfoS("mount succeeded", kv...)
}

// codeOf maps a failure kind to the gRPC code the driver sees.
func codeOf(err error) codes.Code {
	var me *provider.MountError
	kind := keyvault.KindOf(err)
	if errors.As(err, &me) {
		kind = me.Kind()
	}
	switch kind {
	case keyvault.KindInvalidArgument:
		return codes.InvalidArgument
	case keyvault.KindUnauthenticated:
		return codes.Unauthenticated
	case keyvault.KindPermissionDenied:
		return codes.PermissionDenied
	case keyvault.KindNotFound:
		return codes.NotFound
	case keyvault.KindUnavailable:
		return codes.Unavailable
	case keyvault.KindDeadlineExceeded:
		return codes.DeadlineExceeded
	case keyvault.KindResourceExhausted:
		return codes.ResourceExhausted
	}
	return codes.Internal
}

// flatten joins the lines of an errors.Join into one line.
func flatten(err error) string {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return err.Error()
	}
	var out string
	for i, e := range joined.Unwrap() {
		if i > 0 {
			out += "; "
		}
		out += e.Error()
	}
	return out
}

// CallObserver records the outcome of each unary gRPC call (Azure's grpc_request histogram):
// its full method, its code and its duration. The status message is not given: it is error
// text, kept out of metrics.
type CallObserver func(method string, code codes.Code, d time.Duration)

// ObserveCalls is a unary interceptor that reports every call of the server to observe, as Azure's
// provider does (Mount, Version, the health checks of /healthz).
func ObserveCalls(observe CallObserver) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		observe(info.FullMethod, status.Code(err), time.Since(start))
		return resp, err
	}
}

// RecoverPanics turns a panic in one call into Internal for that call, logs its stack once, and
// keeps the server (and every other mount in flight) running.
func RecoverPanics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "panic in a gRPC call", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error in the provider (logged with its stack); the driver will retry")
		}
	}()
	return handler(ctx, req)
}
