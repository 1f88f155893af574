package keyvault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
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

// TestClassifyNeverRepeatsAResponse: a response the SDK cannot decode is reported by its type and
// field, never with the decoder's message, which quotes the response (a secret's value, a key).
// Each case's input holds a marker the detail must not hold.
func TestClassifyNeverRepeatsAResponse(t *testing.T) {
	t.Parallel()
	sdkDecode := func(body string, v any) error {
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
		err := runtime.UnmarshalAsJSON(resp, v)
		if err == nil {
			t.Fatalf("%s decodes", body)
		}
		return err
	}
	_, timeErr := time.Parse(time.RFC3339, "MARKER-time-77")
	_, numErr := strconv.ParseInt("MARKER-num-78", 10, 64)
	for _, tt := range []struct {
		name   string
		err    error
		kind   Kind
		detail string
	}{
		{"a secret whose value is a number", sdkDecode(`{"value": 31337424242, "id": "MARKER-1"}`, &azsecrets.Secret{}), KindInternal,
			"Key Vault's response could not be decoded as azsecrets.Secret (field Value); the decoder's message is not repeated"},
		{"a control character in a value", sdkDecode("{\"value\": \"MARKER-2\x01\"}", &azsecrets.Secret{}), KindInternal,
			"Key Vault's response could not be decoded as azsecrets.Secret;"},
		{"a cut response", sdkDecode(`{"value": "MARKER-3`, &azsecrets.Secret{}), KindInternal, "could not be decoded as azsecrets.Secret;"},
		{"a key that is not base64", sdkDecode(`{"key": {"n": "MARKER-4!!"}}`, &azkeys.KeyBundle{}), KindInternal,
			"could not be decoded as azkeys.KeyBundle (field Key)"},
		{"a decoder's message as text", fmt.Errorf("unmarshalling type *azsecrets.Secret: struct field Attributes: %s", timeErr.Error()), KindInternal,
			"could not be decoded as azsecrets.Secret (field Attributes)"},
		{"a decoder's error, wrapped", fmt.Errorf("reading: %w", timeErr), KindInternal, "a response could not be decoded"},
		{"a number's error, wrapped", fmt.Errorf("reading: %w", numErr), KindInternal, "a response could not be decoded"},
		{"base64's error, wrapped", fmt.Errorf("MARKER-5 %w", base64.CorruptInputError(3)), KindInternal, "a response could not be decoded"},
		{"a token response", &tokenError{errors.New("json decode error: invalid character 'M' looking for beginning of value; MARKER-6\njson message bytes were: MARKER-7")},
			KindUnauthenticated, "could not get a token: json decode error: a response could not be decoded"},
		{"a time as text", errors.New(`ManagedIdentityCredential: parsing time "MARKER-8" as "2006": cannot parse`), KindInternal,
			"ManagedIdentityCredential: a response could not be decoded"},
	} {
		got := AsError(tt.err)
		if got.Kind != tt.kind || !strings.Contains(got.Detail, tt.detail) {
			t.Errorf("%s: kind %d, detail %q; want kind %d and %q", tt.name, got.Kind, got.Detail, tt.kind, tt.detail)
		}
		if strings.Contains(got.Detail, "MARKER") || strings.Contains(got.Detail, "31337") {
			t.Errorf("%s: the detail repeats the response: %q", tt.name, got.Detail)
		}
	}
	// What is not a decoder's message is kept: an identity's or the network's explanation.
	if got := AsError(errors.New("ManagedIdentityCredential: no default identity is assigned to this resource")); got.Detail != "ManagedIdentityCredential: no default identity is assigned to this resource" {
		t.Errorf("plain error: %q", got.Detail)
	}
}
