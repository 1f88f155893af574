package keyvault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Kind classifies a failure by what the operator must do about it.
type Kind int

// Failure kinds. The server maps each to one gRPC code.
const (
	KindInternal          Kind = iota
	KindUnauthenticated        // Entra ID refused the identity, or no token could be had
	KindPermissionDenied       // Key Vault refused the identity (403)
	KindNotFound               // the object or version does not exist (404)
	KindUnavailable            // throttled (429), 5xx, or the network failed
	KindDeadlineExceeded       // the driver's deadline passed
	KindInvalidArgument        // the object cannot be served as asked (e.g. unsupported key type)
	KindResourceExhausted      // the mount passed a bound of the provider (files, bytes)
)

// kindNames are the kinds in words, for labels and logs.
var kindNames = [...]string{
	KindInternal: "internal", KindUnauthenticated: "unauthenticated", KindPermissionDenied: "permission_denied",
	KindNotFound: "not_found", KindUnavailable: "unavailable", KindDeadlineExceeded: "deadline_exceeded",
	KindInvalidArgument: "invalid_argument", KindResourceExhausted: "resource_exhausted",
}

// String names the kind in one snake_case word ("not_found"); an unknown kind is "internal".
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return kindNames[KindInternal]
	}
	return kindNames[k]
}

// Error is a classified failure with a one-line detail that never holds a secret.
type Error struct {
	Kind Kind
	// Status is the HTTP status from Key Vault, Entra ID or the managed identity endpoint (0 if none).
	Status int
	// Code is the service's error code: Key Vault's error.code (with the inner code after a
	// slash, e.g. "Forbidden/ForbiddenByRbac") or Entra ID's AADSTS number.
	Code string
	// Detail is one line saying what went wrong.
	Detail string
	// RetryAfter is how long the service asked the caller to wait (429), if it said.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Detail }
func (e *Error) Unwrap() error { return e.Err }

// Disabled reports Key Vault's refusal to read a disabled object or version (403 with an inner
// code such as SecretDisabled).
func (e *Error) Disabled() bool {
	return e.Status == http.StatusForbidden && strings.HasSuffix(strings.ToLower(e.Code), "disabled")
}

// Absent reports that the object is not there to read: absent, deleted, or disabled.
func (e *Error) Absent() bool { return e.Kind == KindNotFound || e.Disabled() }

// KindOf returns the kind of err, KindInternal when it has none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// AsError returns err's classification.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return classify(err)
}

// classify turns an SDK, identity or transport error into an *Error.
func classify(err error) *Error {
	if err == nil {
		return nil
	}
	var kvErr *Error
	if errors.As(err, &kvErr) {
		return kvErr
	}
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		return classifyAuth(authErr)
	}
	var tokenErr *tokenError
	if errors.As(err, &tokenErr) {
		kind := KindUnauthenticated
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			kind = KindDeadlineExceeded
		}
		return &Error{Kind: kind, Detail: "could not get a token: " + safeLine(tokenErr.err), Err: err}
	}
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return classifyKeyVault(respErr)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: KindDeadlineExceeded, Detail: "the request did not finish before the driver's deadline", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindDeadlineExceeded, Detail: "the driver cancelled the request", Err: err}
	}
	if detail, ok := undecodable(err); ok {
		return &Error{Kind: KindInternal, Detail: detail, Err: err}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return &Error{Kind: KindUnavailable, Detail: "network error: " + safeLine(err), Err: err}
	}
	return &Error{Kind: KindInternal, Detail: safeLine(err), Err: err}
}

// A response the SDK could not decode. azcore and the generated models report it as
// "unmarshalling type <T>: [struct field <F>: ]<decoder message>", with %s, so the decoder's error
// is text, not a type errors.As finds. The decoder's message quotes what it stopped at: a
// character of the response ("invalid character 'x' in string literal"), a base64 offset, a
// value that is not a time. The response is a secret's value, a key or a certificate, so only the
// type and field names (Go identifiers of the SDK) are kept.
var (
	unmarshalRE   = regexp.MustCompile(`unmarshalling type \*?([A-Za-z0-9_]+\.[A-Za-z0-9_]+)`)
	structFieldRE = regexp.MustCompile(`struct field ([A-Za-z0-9_]+)`)
	// decoderRE matches the messages of the decoders of encoding/json, encoding/base64,
	// strconv and time, which repeat their input, wherever an error repeats them as text.
	decoderRE = regexp.MustCompile(`invalid character|cannot unmarshal|unexpected end of JSON|illegal base64|json: |parsing "|parsing time|cannot parse|invalid byte`)
)

// undecodable recognises a response the SDK could not decode, and says so without the decoder's
// message.
func undecodable(err error) (string, bool) {
	msg := err.Error()
	m := unmarshalRE.FindStringSubmatch(msg)
	if m == nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		var b64 base64.CorruptInputError
		var num *strconv.NumError
		var tm *time.ParseError
		if !errors.As(err, &syn) && !errors.As(err, &typ) && !errors.As(err, &b64) && !errors.As(err, &num) && !errors.As(err, &tm) {
			return "", false
		}
		return "a response could not be decoded (the decoder's message is not repeated: it may quote the response)", true
	}
	detail := "Key Vault's response could not be decoded as " + m[1]
	var fields []string
	for _, f := range structFieldRE.FindAllStringSubmatch(msg, 8) {
		fields = append(fields, f[1])
	}
	if len(fields) > 0 {
		detail += " (field " + strings.Join(fields, ".") + ")"
	}
	return detail + "; the decoder's message is not repeated, as it may quote the response, which holds the object's value. " +
		"Check that nothing between the node and Key Vault (a proxy, a firewall) answers in its place", true
}

// safeLine is the first line of an error's message for a detail (capped by oneLine), with the
// part a decoder wrote left out: an error that is not a Key Vault response can still wrap one
// (a token response, a managed identity endpoint's answer).
func safeLine(err error) string {
	line := oneLine(err.Error())
	if loc := decoderRE.FindStringIndex(line); loc != nil {
		return strings.TrimRight(line[:loc[0]], ": ") + ": a response could not be decoded (the decoder's message is not repeated: it may quote the response)"
	}
	return line
}

// TokenFailure classifies the failure of a token request made outside a Key Vault client (the
// provider's proof of a new identity) as a read's token failure would be.
func TokenFailure(err error) *Error { return classify(&tokenError{err}) }

// tokenError marks a failure to get a token, so that it is reported as an identity problem
// even when azidentity gives it no type of its own (e.g. a credential that is unavailable).
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

func classifyKeyVault(e *azcore.ResponseError) *Error {
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if e.RawResponse != nil {
		if payload, err := runtime.Payload(e.RawResponse); err == nil {
			_ = json.Unmarshal(payload, &body) // best effort: the status alone still classifies
		}
	}
	code := e.ErrorCode
	if code == "" {
		code = body.Error.Code
	}
	if inner := body.Error.InnerError.Code; inner != "" {
		code += "/" + inner
	}
	detail := fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if code != "" {
		detail += " (" + code + ")"
	}
	if msg := firstLine(body.Error.Message); msg != "" && e.StatusCode != http.StatusForbidden {
		detail += ": " + msg
	}
	out := &Error{Kind: kindForStatus(e.StatusCode), Status: e.StatusCode, Code: code, Detail: detail, Err: e}
	if e.RawResponse != nil {
		out.RetryAfter = retryAfter(e.RawResponse.Header, time.Now())
	}
	return out
}

// retryAfter reads the delay a throttled response asks for, as azcore does: retry-after-ms,
// x-ms-retry-after-ms, then Retry-After in seconds or as an HTTP date. 0 means none given.
func retryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if ms, err := strconv.Atoi(h.Get(k)); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	v := h.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func kindForStatus(status int) Kind {
	switch {
	case status == http.StatusUnauthorized:
		return KindUnauthenticated
	case status == http.StatusForbidden:
		return KindPermissionDenied
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		return KindUnavailable
	}
	return KindInternal
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

// classifyAuth reads Entra ID's or the managed identity endpoint's error body.
func classifyAuth(e *azidentity.AuthenticationFailedError) *Error {
	out := &Error{Kind: KindUnauthenticated, Err: e}
	var body struct {
		Error       any    `json:"error"`
		Description string `json:"error_description"`
		Codes       []int  `json:"error_codes"`
	}
	if e.RawResponse != nil {
		out.Status = e.RawResponse.StatusCode
		if out.Status == http.StatusTooManyRequests || out.Status >= 500 {
			out.Kind = KindUnavailable
		}
		if payload, err := runtime.Payload(e.RawResponse); err == nil {
			_ = json.Unmarshal(payload, &body) // best effort
		}
	}
	desc := firstLine(body.Description)
	if m := aadstsRE.FindStringSubmatch(desc); m != nil {
		out.Code = m[1]
	} else if len(body.Codes) > 0 {
		out.Code = fmt.Sprint(body.Codes[0])
	}
	switch {
	case desc != "":
		out.Detail = desc
	case out.Status != 0:
		out.Detail = fmt.Sprintf("token request failed with %d %s", out.Status, http.StatusText(out.Status))
		if s, ok := body.Error.(string); ok && s != "" {
			out.Detail += " (" + s + ")"
		}
	default:
		out.Detail = safeLine(e)
	}
	return out
}

// firstLine keeps the first line of a service message: Entra ID appends trace and correlation
// IDs after "\r\n", Key Vault appends caller details.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// oneLine flattens an SDK message and caps its length so no HTTP dump reaches an operator.
func oneLine(s string) string {
	s = firstLine(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
