// Package httpx holds the few helpers every HTTP surface shares: reading
// a bounded JSON body, writing JSON, and turning an error into Azure's
// error envelope through one table.
package httpx

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/keyward/keyward/internal/fault"
)

// MaxBody bounds request bodies. The largest legitimate bodies are key
// backups being restored; 4 MiB leaves room for thousands of versions.
const MaxBody = 4 << 20

// ErrorBody is Azure's error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of the envelope.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// status maps each fault kind to an HTTP status and a default code. An
// oversize body is a 400 BadParameter, as the data plane reports it.
var status = map[fault.Kind]struct {
	status int
	code   string
}{
	fault.Invalid:         {http.StatusBadRequest, "BadParameter"},
	fault.TooLarge:        {http.StatusBadRequest, "BadParameter"},
	fault.NotFound:        {http.StatusNotFound, "NotFound"},
	fault.Conflict:        {http.StatusConflict, "Conflict"},
	fault.Forbidden:       {http.StatusForbidden, "Forbidden"},
	fault.Unauthenticated: {http.StatusUnauthorized, "Unauthorized"},
	fault.Unavailable:     {http.StatusServiceUnavailable, "ServiceUnavailable"},
	fault.Internal:        {http.StatusInternalServerError, "InternalServerError"},
}

// Classify returns the status, code and public message for err. Errors
// without a kind are internal, and their text is not revealed.
func Classify(err error) (int, string, string) {
	fe, ok := fault.As(err)
	if !ok || fe.Kind == fault.Internal {
		return http.StatusInternalServerError, "InternalServerError", "The server encountered an internal error; see the server log."
	}
	s := status[fe.Kind]
	code := fe.Code
	if code == "" {
		code = s.code
	}
	return s.status, code, fe.Msg
}

// WriteError renders err as Azure's envelope and logs internal causes: an
// internal error at Error; a classified error that carries a cause
// (fault.Wrap), which the envelope leaves out, at Warn for a 5xx and at
// Info for a refusal of the request.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	st, code, msg := Classify(err)
	switch fe, _ := fault.As(err); {
	case st == http.StatusInternalServerError:
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case fe == nil || fe.Cause() == nil:
	case st >= 500:
		log.WarnContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	default:
		log.InfoContext(r.Context(), "request refused", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	}
	w.Header().Set("x-ms-error-code", code)
	WriteJSON(w, st, ErrorBody{ErrorDetail{Code: code, Message: msg}})
}

// WriteJSON writes v as JSON with status st.
func WriteJSON(w http.ResponseWriter, st int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only wire models reach here; a failure is a bug worth a clear 500.
		b = []byte(`{"error":{"code":"InternalServerError","message":"response encoding failed"}}`)
		st = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(st)
	w.Write(b)
}

// ReadJSON decodes a bounded JSON body into v. Malformed JSON, a wrong
// field type, an empty body and an oversize body are bad input.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fault.Errorf(fault.TooLarge, "BadParameter", "the request body exceeds %d bytes", MaxBody)
	}
	if err != nil {
		return fault.Invalidf("the request body could not be read")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return fault.Invalidf("the request body is empty; a JSON object is required")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		var be *B64Error
		switch {
		case errors.As(err, &be):
			return fault.Invalidf("%s", be.Error())
		case errors.As(err, &te):
			return fault.Invalidf("the field %q has the wrong type: %s expected", te.Field, te.Type)
		}
		return fault.Invalidf("the request body is not valid JSON")
	}
	return nil
}

// B64 is a byte string in base64url. It is written without padding, as
// Azure clients require, and read with or without it.
type B64 []byte

// MarshalJSON implements json.Marshaler.
func (b B64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *B64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return &B64Error{"a base64url string was expected"}
	}
	out, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return &B64Error{"a byte field is not valid base64url"} // the value may be secret: never echo it
	}
	*b = out
	return nil
}

// B64Error reports a malformed base64url value.
type B64Error struct{ msg string }

func (e *B64Error) Error() string { return e.msg }
