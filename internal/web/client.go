package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// api makes the signed-in user's API calls: each is a request through the
// front door with a token the token service issues for the user's session
// (its amr and auth_time), for the surface's audience. Each is authorized
// and audited as any other call of the user's.
type api struct {
	c      *Console
	r      *http.Request // the page request: its context, address and session
	tokens map[string]string
}

func (c *Console) apiFor(r *http.Request) *api { return &api{c: c, r: r, tokens: map[string]string{}} }

// apiError is a refusal or failure the API answered, in Azure's envelope.
type apiError struct {
	Status        int
	Code, Message string
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// describe says in plain words what a failed read means for a page: a
// refusal is "you may not read …" (the page shows what the user may), not
// the API's message with its ids.
func describe(what string, err error) string {
	var e *apiError
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return "You may not read " + what + " (" + e.Code + ")."
		case http.StatusNotFound:
			return "There are no " + what + " to show (" + e.Code + ")."
		}
	}
	return "The console could not read " + what + ": " + err.Error()
}

// forbidden tells whether err is the API's refusal (401 or 403).
func forbidden(err error) bool {
	e, ok := err.(*apiError)
	return ok && (e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized)
}

// token returns the user's token for audience aud.
func (a *api) token(aud string) (string, error) {
	if t, ok := a.tokens[aud]; ok {
		return t, nil
	}
	s := sessionOf(a.r)
	t, _, err := a.c.cfg.Tokens.IssueSession(a.r.Context(), s.User, aud, s.AMR, s.AuthTime)
	if err != nil {
		return "", fmt.Errorf("console: issuing the user's token: %w", err)
	}
	a.tokens[aud] = t
	return t, nil
}

// arm, graph and hsm call a surface; path starts with "/".
func (a *api) arm(method, path string, body, out any) error {
	return a.do(method, strings.TrimSuffix(a.c.cfg.Management, "/")+path, a.c.cfg.ARMResource, body, out)
}

func (a *api) graph(method, path string, body, out any) error {
	return a.do(method, strings.TrimSuffix(a.c.cfg.Graph, "/")+path, a.c.cfg.GraphResource, body, out)
}

func (a *api) hsm(name, method, path string, body, out any) error {
	return a.do(method, a.c.cfg.HSMURI(name)+path, a.c.cfg.HSMResource, body, out)
}

// maxAnswer bounds what the console reads of one answer.
const maxAnswer = 8 << 20

func (a *api) do(method, url, aud string, body, out any) error {
	tok, err := a.token(aud)
	if err != nil {
		return err
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(a.r.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	req.RemoteAddr, req.TLS, req.Proto = a.r.RemoteAddr, a.r.TLS, a.r.Proto
	req.RequestURI = req.URL.RequestURI()
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", "keyward-console")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &answer{header: http.Header{}, status: http.StatusOK}
	a.c.cfg.API.ServeHTTP(rec, req)
	if rec.status >= 300 {
		e := &apiError{Status: rec.status}
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &env) == nil {
			e.Code, e.Message = env.Error.Code, env.Error.Message
		}
		return e
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("console: reading %s %s: %w", method, req.URL.Path, err)
		}
	}
	return nil
}

// answer is an in-memory http.ResponseWriter for the console's calls.
type answer struct {
	header  http.Header
	status  int
	written bool
	body    bytes.Buffer
}

func (w *answer) Header() http.Header { return w.header }

func (w *answer) WriteHeader(code int) {
	if !w.written {
		w.status, w.written = code, true
	}
}

func (w *answer) Write(b []byte) (int, error) {
	w.written = true
	if w.body.Len()+len(b) > maxAnswer {
		return 0, fmt.Errorf("console: an answer larger than %d bytes", maxAnswer)
	}
	return w.body.Write(b)
}
