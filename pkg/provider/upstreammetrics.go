package provider

import (
	"context"
	"net/http"
	"time"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
)

// objectRead names a read for Azure's keyvault_request histogram (metrics.Recorder
// ObserveObjectRequest): the object's type as a SecretProviderClass names it, and its name. A
// selection's listing (objectNamePrefix, objectTags) is the zero value: it reads no one object and
// Azure's provider has no such read, so it is not observed there (akv_provider_keyvault_requests_total
// counts its pages); each object it matches is observed when read.
type objectRead struct {
	typ  config.ObjectType
	name string
}

// observed runs a read's throttle loop and records the read once in keyvault_request, as Azure's
// provider records each object read and each versions listing: from its first request (after
// its turn at the rate limiter) to its result, 429 retries included, as the SDK's retries are in
// Azure's. Only the read that goes to Key Vault runs this: a kept result or a read joined in
// flight makes no request and is not observed, nor is a read the provider's rate limiter refused
// before sending anything.
func observed[T any](ctx context.Context, c *sharedClient, obj objectRead, fetch func(context.Context) (T, error)) (T, error) {
	if obj.name == "" {
		return throttled(ctx, c, fetch)
	}
	var start time.Time
	v, err := throttled(ctx, c, func(ctx context.Context) (T, error) {
		if start.IsZero() {
			start = time.Now()
		}
		return fetch(ctx)
	})
	if !start.IsZero() {
		c.rec.ObserveObjectRequest(string(obj.typ), obj.name, errorClass(err), time.Since(start))
	}
	return v, err
}

// errorClass is keyvault_request's error label: "" on success, else the class of the failure's
// kind (never its text, which may quote what Key Vault answered).
func errorClass(err error) string {
	if err == nil {
		return ""
	}
	e := keyvault.AsError(err)
	if e.Kind == keyvault.KindUnavailable && e.Status == http.StatusTooManyRequests {
		return metrics.ErrorThrottled // Key Vault's 429, apart from the other unavailable answers
	}
	return e.Kind.String() // the metrics' classes are the kinds' names (TestErrorClass)
}
