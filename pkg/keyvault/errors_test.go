package keyvault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

func response(status int, body string, header http.Header) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body))}
}

func TestClassifyKeyVault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		body       string
		header     http.Header
		kind       Kind
		code       string
		detail     string
		retryAfter time.Duration
	}{
		{"rbac", 403, `{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nCaller: appid=x","innererror":{"code":"ForbiddenByRbac"}}}`, nil,
			KindPermissionDenied, "Forbidden/ForbiddenByRbac", "403 Forbidden (Forbidden/ForbiddenByRbac)", 0},
		{"not found", 404, `{"error":{"code":"SecretNotFound","message":"A secret with (name/id) x was not found in this key vault."}}`, nil,
			KindNotFound, "SecretNotFound", "404 Not Found (SecretNotFound): A secret with (name/id) x was not found in this key vault.", 0},
		{"throttled", 429, `{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received."}}`, http.Header{"Retry-After": {"7"}},
			KindUnavailable, "Throttled", "429 Too Many Requests (Throttled)", 7 * time.Second},
		{"unavailable, no body", 503, ``, http.Header{"Retry-After-Ms": {"250"}}, KindUnavailable, "", "503 Service Unavailable", 250 * time.Millisecond},
		{"unauthorized", 401, `{"error":{"code":"Unauthorized","message":"AKV10000: x"}}`, nil, KindUnauthenticated, "Unauthorized", "401 Unauthorized (Unauthorized)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := fmt.Errorf("wrapped: %w", &azcore.ResponseError{StatusCode: tt.status, RawResponse: response(tt.status, tt.body, tt.header)})
			got := AsError(err)
			if got.Kind != tt.kind || got.Code != tt.code || !strings.HasPrefix(got.Detail, tt.detail) || got.RetryAfter != tt.retryAfter {
				t.Errorf("got kind %d code %q detail %q retryAfter %v", got.Kind, got.Code, got.Detail, got.RetryAfter)
			}
			if strings.Contains(got.Detail, "Caller: appid") || strings.Contains(got.Detail, "\n") {
				t.Errorf("detail carries more than the first line: %q", got.Detail)
			}
		})
	}
}

func TestClassifyOther(t *testing.T) {
	t.Parallel()
	if k := AsError(context.DeadlineExceeded).Kind; k != KindDeadlineExceeded {
		t.Errorf("deadline: %d", k)
	}
	if k := AsError(&tokenError{errors.New("ManagedIdentityCredential: no identity")}).Kind; k != KindUnauthenticated {
		t.Errorf("token error: %d", k)
	}
	if k := AsError(errors.New("x")).Kind; k != KindInternal {
		t.Errorf("other: %d", k)
	}
	long := AsError(errors.New(strings.Repeat("a", 400) + "\nsecond line"))
	if len(long.Detail) > 310 || strings.Contains(long.Detail, "second") {
		t.Errorf("detail not cut to one short line: %d chars", len(long.Detail))
	}
}

func TestRetryAfterDate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{"Retry-After": {now.Add(3 * time.Second).Format(http.TimeFormat)}}
	if got := retryAfter(h, now); got != 3*time.Second {
		t.Errorf("retryAfter(date) = %v", got)
	}
	if got := retryAfter(http.Header{"Retry-After": {"0"}}, now); got != 0 {
		t.Errorf("retryAfter(0) = %v", got)
	}
}

func TestRequestKind(t *testing.T) {
	t.Parallel()
	for path, want := range map[string][2]string{
		"/secrets/a/":              {"get", "secret"},
		"/secrets/a/v1":            {"get", "secret"},
		"/keys/a/versions":         {"list", "key"},
		"/certificates/c/":         {"get", "certificate"},
		"/certificates/c/versions": {"list", "certificate"},
		"/":                        {"list", "other"},
	} {
		if op, typ := requestKind(path); op != want[0] || typ != want[1] {
			t.Errorf("requestKind(%q) = %s %s", path, op, typ)
		}
	}
}

func TestAbsent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err            *Error
		disabled, gone bool
	}{
		{&Error{Kind: KindNotFound, Status: 404, Code: "SecretNotFound"}, false, true},
		{&Error{Kind: KindPermissionDenied, Status: 403, Code: "Forbidden/SecretDisabled"}, true, true},
		{&Error{Kind: KindPermissionDenied, Status: 403, Code: "Forbidden/ForbiddenByRbac"}, false, false},
		{&Error{Kind: KindUnavailable, Status: 503}, false, false},
	} {
		if tt.err.Disabled() != tt.disabled || tt.err.Absent() != tt.gone {
			t.Errorf("%+v: Disabled %v Absent %v, want %v %v", tt.err, tt.err.Disabled(), tt.err.Absent(), tt.disabled, tt.gone)
		}
	}
}
