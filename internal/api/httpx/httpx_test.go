package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/fault"
)

// TestWriteErrorKeepsCausesInTheLog: a wrapped cause never reaches the
// envelope, and is logged at a level that fits the status.
func TestWriteErrorKeepsCausesInTheLog(t *testing.T) {
	refused := fault.New(fault.Forbidden, "Forbidden", "the storage refused the request")
	busy := fault.New(fault.Unavailable, "", "try again later")
	cause := errors.New("dial tcp 10.1.2.3:443: connection refused")
	for _, c := range []struct {
		err       error
		st        int
		code, msg string
		level     string // "" when nothing is logged
	}{
		{fault.Wrap(refused, cause), 403, "Forbidden", refused.Msg, "INFO"},
		{fmt.Errorf("backup: %w", fault.Wrap(refused.With("the SAS token was refused"), cause)), 403, "Forbidden", "the SAS token was refused", "INFO"},
		{fault.Wrap(busy, cause), 503, "ServiceUnavailable", busy.Msg, "WARN"},
		{fmt.Errorf("store: %w", cause), 500, "InternalServerError", "The server encountered an internal error; see the server log.", "ERROR"},
		{refused, 403, "Forbidden", refused.Msg, ""},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		w := httptest.NewRecorder()
		WriteError(w, httptest.NewRequest(http.MethodGet, "/keys/k", nil), log, c.err)
		var body ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.st || body.Error.Code != c.code || body.Error.Message != c.msg || w.Header().Get("x-ms-error-code") != c.code {
			t.Errorf("%v: %d %+v, want %d %s %q", c.err, w.Code, body.Error, c.st, c.code, c.msg)
		}
		if strings.Contains(w.Body.String(), "10.1.2.3") {
			t.Errorf("%v: the response shows the cause: %s", c.err, w.Body)
		}
		switch {
		case c.level == "" && logs.Len() != 0:
			t.Errorf("%v: logged %s", c.err, logs.String())
		case c.level != "" && (!strings.Contains(logs.String(), "level="+c.level) || !strings.Contains(logs.String(), "10.1.2.3")):
			t.Errorf("%v: logged %q, want the cause at %s", c.err, logs.String(), c.level)
		}
	}
}
