package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/identity"
)

// authenticate verifies the bearer token for resource and returns r with
// the caller in its context, or answers 401 with Azure's challenge and
// returns nil. The token itself is never logged.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, resource string) *http.Request {
	challenge := func() {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s%s", resource="%s"`, s.base, s.dir.TenantID(), resource))
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		challenge()
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusUnauthorized)
		return nil
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		challenge()
		httpx.WriteError(w, r, s.log, identity.ErrInvalidToken.With("the Authorization header must carry a Bearer token"))
		return nil
	}
	c, err := s.tokens.Verify(strings.TrimSpace(tok), resource)
	if err != nil {
		s.log.Info("token rejected", "path", r.URL.Path, "reason", err)
		challenge()
		httpx.WriteError(w, r, s.log, identity.ErrInvalidToken.With("the access token is not valid: expired, for another audience, or not signed by this server"))
		return nil
	}
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		info.caller = c
	}
	return r.WithContext(identity.NewContext(r.Context(), c))
}
