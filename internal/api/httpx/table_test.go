package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/fault"
)

// TestClassify: each kind's status and default code, a sentinel's own
// code, and internal errors' text kept out of the answer.
func TestClassify(t *testing.T) {
	notFound := fault.New(fault.NotFound, "KeyNotFound", "the key does not exist")
	for _, c := range []struct {
		err        error
		status     int
		code, msg  string
		hidesCause string
	}{
		{fault.Invalidf("bad %s", "input"), 400, "BadParameter", "bad input", ""},
		{fault.Errorf(fault.TooLarge, "", "too big"), 400, "BadParameter", "too big", ""},
		{notFound, 404, "KeyNotFound", "the key does not exist", ""},
		{notFound.With("the key %s does not exist", "k"), 404, "KeyNotFound", "the key k does not exist", ""},
		{fmt.Errorf("reading: %w", notFound), 404, "KeyNotFound", "the key does not exist", ""},
		{fault.Wrap(notFound, errors.New("dial tcp 10.0.0.1: refused")), 404, "KeyNotFound", "the key does not exist", "10.0.0.1"},
		{fault.Errorf(fault.Conflict, "", "exists"), 409, "Conflict", "exists", ""},
		{fault.Errorf(fault.Forbidden, "AccessDenied", "no"), 403, "AccessDenied", "no", ""},
		{fault.Errorf(fault.Unauthenticated, "", "who"), 401, "Unauthorized", "who", ""},
		{fault.Errorf(fault.Unavailable, "", "later"), 503, "ServiceUnavailable", "later", ""},
		{errors.New("disk I/O error at /var/lib/secret"), 500, "InternalServerError", "The server encountered an internal error; see the server log.", "/var/lib/secret"},
		{fault.Errorf(fault.Internal, "X", "internal detail"), 500, "InternalServerError", "The server encountered an internal error; see the server log.", "internal detail"},
	} {
		st, code, msg := Classify(c.err)
		if st != c.status || code != c.code || msg != c.msg {
			t.Errorf("%v: %d %s %q, want %d %s %q", c.err, st, code, msg, c.status, c.code, c.msg)
		}
		if c.hidesCause != "" {
			rec := httptest.NewRecorder()
			WriteError(rec, httptest.NewRequest("GET", "/", nil), slog.New(slog.NewTextHandler(io.Discard, nil)), c.err)
			if strings.Contains(rec.Body.String(), c.hidesCause) {
				t.Errorf("%v: the answer shows %q: %s", c.err, c.hidesCause, rec.Body)
			}
			if rec.Header().Get("x-ms-error-code") != c.code {
				t.Errorf("%v: x-ms-error-code %q", c.err, rec.Header().Get("x-ms-error-code"))
			}
		}
	}
}

// TestReadJSON: what a body may be, each refusal bad input (400).
func TestReadJSON(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
		Data  B64    `json:"data"`
	}
	for _, c := range []struct {
		name, in string
		ok       bool
		want     string // part of the message
	}{
		{"good", `{"name":"k","count":2,"data":"AQI"}`, true, ""},
		{"empty", ``, false, "empty"},
		{"blank", "  \n", false, "empty"},
		{"not JSON", `{"name":`, false, "not valid JSON"},
		{"wrong type", `{"count":"two"}`, false, `"count" has the wrong type`},
		{"bad base64url", `{"data":"!!"}`, false, "base64url"},
		{"oversize", `{"name":"` + strings.Repeat("a", MaxBody) + `"}`, false, "exceeds"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.in))
		var v body
		err := ReadJSON(httptest.NewRecorder(), req, &v)
		if c.ok {
			if err != nil || v.Name != "k" || v.Count != 2 || string(v.Data) != "\x01\x02" {
				t.Errorf("%s: %v %+v", c.name, err, v)
			}
			continue
		}
		st, code, msg := Classify(err)
		if st != 400 || code != "BadParameter" || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %s %q, want 400 BadParameter with %q", c.name, st, code, msg, c.want)
		}
	}
}

// TestWriteJSON: the content type and a body that decodes.
func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, 201, map[string]string{"a": "b"})
	var m map[string]string
	if rec.Code != 201 || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m["a"] != "b" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}
