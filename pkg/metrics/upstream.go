package metrics

import (
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Azure's provider (v1.8.2) exports two histograms through the OpenTelemetry Prometheus exporter:
// keyvault_request and grpc_request. They are exported here as well, beside the akv_provider_*
// metrics, with the same names, type, help, buckets and label keys (the OpenTelemetry scope and
// resource attributes included, as constant labels), so that dashboards and alerts written for
// Azure's provider keep working. The exposition of Azure's own code is in
// testdata/upstream-v1.8.2-metrics.txt. Its target_info (the OpenTelemetry resource) is not
// copied: it would claim an OpenTelemetry SDK this provider does not run.
//
// Azure's provider labels them with whatever a SecretProviderClass or a failure brings (any
// object name, the raw error text, the raw gRPC message): unbounded series, and error text that
// may quote what Key Vault answered. Here every label value is bounded, and none is error text:
//   - error: "" on success, else one of a fixed set of classes (ErrorClasses);
//   - object_name: the object's name, for the first MaxObjectNames distinct names the process
//     read successfully; every other name (a later one, or one whose reads have all failed, such
//     as a made-up name) is OtherObjectName;
//   - object_type: secret, key or cert (anything else: "other");
//   - grpc_code: a gRPC code name (anything else: "Unknown");
//   - grpc_message: "" for OK, else a fixed class per code, never the status message (which is in
//     the provider's log and the pod's events);
//   - grpc_method: the methods of the provider's gRPC server (gRPC answers an unknown method
//     before any interceptor sees it), and at most MaxGRPCMethods of them in any case.
//
// Worst case: keyvault_request has (MaxObjectNames+1) names x 4 types x (len(ErrorClasses)+1)
// series, grpc_request (MaxGRPCMethods+1) methods x 17 codes; each series is 17 lines (14
// buckets, +Inf, sum, count). In practice a name sees a type or two and few classes.

const upstreamService = "csi-secrets-store-provider-azure"

// MaxObjectNames bounds the distinct object_name values of keyvault_request in one process. 100
// covers the objects a node mounts in most clusters (a SecretProviderClass names a handful), while
// a namespace that names thousands of objects cannot make the scrape grow past it. A name is
// admitted by its first successful read (a made-up name, which Key Vault answers 404, takes no
// place), first come, first kept, for the life of the process: evicting names would let such a
// namespace churn series instead.
const MaxObjectNames = 100

// OtherObjectName is the object_name of every name past MaxObjectNames. Key Vault names are
// letters, digits and dashes, so no object has it.
const OtherObjectName = "_other"

// MaxGRPCMethods bounds the distinct grpc_method values of grpc_request (the server has four
// unary methods: Mount, Version, and the health service's Check and List).
const MaxGRPCMethods = 16

// OtherGRPCMethod is the grpc_method of every method past MaxGRPCMethods.
const OtherGRPCMethod = "_other"

// Error classes: the error label of keyvault_request when the read failed. One per failure kind
// of pkg/keyvault, spelt as its Kind.String, with Key Vault's 429 apart from the other
// unavailable answers.
const (
	ErrorInternal          = "internal"
	ErrorUnauthenticated   = "unauthenticated"
	ErrorPermissionDenied  = "permission_denied"
	ErrorNotFound          = "not_found"
	ErrorThrottled         = "throttled"
	ErrorUnavailable       = "unavailable"
	ErrorDeadlineExceeded  = "deadline_exceeded"
	ErrorInvalidArgument   = "invalid_argument"
	ErrorResourceExhausted = "resource_exhausted"
)

// ErrorClasses are the values of keyvault_request's error label besides "" (success). Any other
// value given to ObserveObjectRequest is recorded as ErrorInternal.
var ErrorClasses = []string{ErrorInternal, ErrorUnauthenticated, ErrorPermissionDenied, ErrorNotFound, ErrorThrottled,
	ErrorUnavailable, ErrorDeadlineExceeded, ErrorInvalidArgument, ErrorResourceExhausted}

// grpcMessages is grpc_request's grpc_message for each gRPC code name: "" for OK, else the code
// in the words of the error classes above.
var grpcMessages = map[string]string{
	"OK": "", "Canceled": "canceled", "Unknown": "unknown", "InvalidArgument": "invalid_argument",
	"DeadlineExceeded": "deadline_exceeded", "NotFound": "not_found", "AlreadyExists": "already_exists",
	"PermissionDenied": "permission_denied", "ResourceExhausted": "resource_exhausted",
	"FailedPrecondition": "failed_precondition", "Aborted": "aborted", "OutOfRange": "out_of_range",
	"Unimplemented": "unimplemented", "Internal": "internal", "Unavailable": "unavailable",
	"DataLoss": "data_loss", "Unauthenticated": "unauthenticated",
}

// upstreamBuckets are Azure's, in seconds.
var upstreamBuckets = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 1, 1.5, 2, 2.5, 3, 5, 10, 15, 30}

// upstreamLabels are the attributes Azure's provider and its OpenTelemetry exporter put on every
// series, with the values they have there.
func upstreamLabels() prometheus.Labels {
	return prometheus.Labels{
		"os_type": runtime.GOOS, "provider": "azure", "service_name": upstreamService,
		"otel_scope_name": upstreamService, "otel_scope_schema_url": "", "otel_scope_version": "",
	}
}

// upstream holds the two histograms and the bounds of their labels.
type upstream struct {
	keyvaultRequest, grpcRequest *prometheus.HistogramVec
	objectNames, grpcMethods     *firstNames
}

func newUpstream() *upstream {
	return &upstream{
		keyvaultRequest: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyvault_request", Help: "Distribution of how long it took to get from keyvault",
			Buckets: upstreamBuckets, ConstLabels: upstreamLabels(),
		}, []string{"error", "object_name", "object_type"}),
		grpcRequest: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_request", Help: "Distribution of how long it took for the gRPC requests",
			Buckets: upstreamBuckets, ConstLabels: upstreamLabels(),
		}, []string{"grpc_code", "grpc_message", "grpc_method"}),
		objectNames: newFirstNames(MaxObjectNames, OtherObjectName),
		grpcMethods: newFirstNames(MaxGRPCMethods, OtherGRPCMethod),
	}
}

func (u *upstream) observeObjectRequest(objectType, objectName, errorClass string, d time.Duration) {
	switch objectType {
	case "secret", "key", "cert":
	default:
		objectType = "other"
	}
	if errorClass != "" && !knownErrorClass(errorClass) {
		errorClass = ErrorInternal
	}
	u.keyvaultRequest.WithLabelValues(errorClass, u.objectNames.value(objectName, errorClass == ""), objectType).Observe(d.Seconds())
}

func (u *upstream) observeGRPCRequest(method, code string, d time.Duration) {
	message, ok := grpcMessages[code]
	if !ok {
		code, message = "Unknown", grpcMessages["Unknown"]
	}
	u.grpcRequest.WithLabelValues(code, message, u.grpcMethods.value(method, true)).Observe(d.Seconds())
}

func knownErrorClass(c string) bool { return slices.Contains(ErrorClasses, c) }

// firstNames admits the first max distinct names offered for admission and answers other for
// every name it has not admitted.
type firstNames struct {
	max   int
	other string
	mu    sync.Mutex
	seen  map[string]struct{}
}

func newFirstNames(limit int, other string) *firstNames {
	return &firstNames{max: limit, other: other, seen: map[string]struct{}{}}
}

// value is name if it was admitted before, or is now (admit, and a place is left); else other.
func (f *firstNames) value(name string, admit bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seen[name]; ok {
		return name
	}
	if !admit || len(f.seen) >= f.max {
		return f.other
	}
	f.seen[name] = struct{}{}
	return name
}
