package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// Cookies. The __Host- prefix makes the browser refuse them unless they
// are Secure, for this host only (no Domain) and for every path.
const (
	sessionCookie = "__Host-kw_session"
	flowCookie    = "__Host-kw_signin" // a sign-in under way: its state and PKCE verifier
)

type sessionKey struct{}

// sessionOf returns the request's session, if it has one.
func sessionOf(r *http.Request) *identity.Session {
	s, _ := r.Context().Value(sessionKey{}).(*identity.Session)
	return s
}

type tokenKey struct{}

// sessionToken returns the request's session cookie's value.
func sessionToken(r *http.Request) string {
	tok, _ := r.Context().Value(tokenKey{}).(string)
	return tok
}

// user wraps a page that needs a signed-in user: without a live session
// the browser goes to sign in (a GET) or is refused (a POST); a POST needs
// the session's CSRF token and, when the browser says where it comes
// from, the console's own origin.
func (c *Console) user(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		var s *identity.Session
		if err == nil {
			s, err = c.cfg.Directory.OpenSession(r.Context(), ck.Value)
		}
		if err != nil && fault.KindOf(err) != fault.Unauthenticated && !errors.Is(err, http.ErrNoCookie) {
			c.cfg.Log.ErrorContext(r.Context(), "opening a console session", "err", err)
			c.message(w, r, http.StatusServiceUnavailable, "Try again later", "The console cannot read your session now.", "")
			return
		}
		if s == nil {
			if ck != nil {
				dropCookie(w, sessionCookie)
			}
			if r.Method != http.MethodGet {
				c.message(w, r, http.StatusUnauthorized, "Signed out", "Your session ended: sign in again.", c.base)
				return
			}
			c.startSignIn(w, r)
			return
		}
		if r.Method == http.MethodPost {
			if o := r.Header.Get("Origin"); o != "" && o != c.origin {
				c.message(w, r, http.StatusForbidden, "Refused", "That form did not come from the console.", c.base)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil {
				c.message(w, r, http.StatusBadRequest, "Bad form", "The form could not be read.", c.base)
				return
			}
			if !c.cfg.Directory.CheckSessionMAC("csrf", s.ID, r.PostForm.Get("csrf")) {
				c.message(w, r, http.StatusForbidden, "Refused", "That form is not from this session (its CSRF token is missing or wrong). Reload the page and try again.", c.base)
				return
			}
		}
		caller := &identity.Caller{ObjectID: s.User.ID, TenantID: c.cfg.Directory.TenantID(), Kind: s.User.Kind, Name: s.User.DisplayName,
			UPN: s.User.UPN, AMR: s.AMR, AuthTime: s.AuthTime, TokenID: "console-session:" + s.ID}
		if c.cfg.NoteCaller != nil {
			c.cfg.NoteCaller(r, caller)
		}
		ctx := context.WithValue(context.WithValue(r.Context(), sessionKey{}, s), tokenKey{}, ck.Value)
		h(w, r.WithContext(ctx))
	}
}

// csrfToken is the session's CSRF token: bound to it under the pepper.
func (c *Console) csrfToken(s *identity.Session) string {
	return c.cfg.Directory.SessionMAC("csrf", s.ID)
}

// signInFlow is what the browser keeps (sealed) while it signs in.
type signInFlow struct {
	State    string `json:"s"`
	Verifier string `json:"v"`
	Next     string `json:"n"`
}

// startSignIn sends the browser to the token service's sign-in page,
// with a PKCE challenge, and keeps the flow in a cookie.
func (c *Console) startSignIn(w http.ResponseWriter, r *http.Request) {
	f := signInFlow{State: random(24), Verifier: random(48), Next: "access"}
	// Back to the page asked for, with its query (an audit search's
	// filters), after the sign-in.
	if p := strings.TrimPrefix(r.URL.Path, "/console/"); p != r.URL.Path && p != "" && !strings.Contains(p, "//") && r.Method == http.MethodGet {
		f.Next = p
		if q := r.URL.Query(); len(q) > 0 && len(r.URL.RawQuery) < 1000 {
			f.Next += "?" + q.Encode()
		}
	}
	sealed, err := c.cfg.Directory.SealFlow(f)
	if err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "sealing a console sign-in", "err", err)
		c.message(w, r, http.StatusInternalServerError, "Try again later", "The sign-in could not be started.", "")
		return
	}
	setCookie(w, flowCookie, sealed, 10*time.Minute)
	sum := sha256.Sum256([]byte(f.Verifier))
	q := url.Values{"client_id": {ClientID}, "response_type": {"code"}, "redirect_uri": {c.redirectURI()},
		"scope": {"openid profile " + c.cfg.ARMResource + "/.default"}, "state": {f.State},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	http.Redirect(w, r, c.cfg.Authority+c.cfg.Directory.TenantID()+"/oauth2/v2.0/authorize?"+q.Encode(), http.StatusFound)
}

// signedIn is the redirect URI: it redeems the code with the flow's
// verifier and starts a session.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f signInFlow
	ck, err := r.Cookie(flowCookie)
	if err != nil || c.cfg.Directory.OpenFlow(ck.Value, &f) != nil ||
		subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		c.message(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in was not started here, or took too long.", c.base)
		return
	}
	dropCookie(w, flowCookie)
	if e := q.Get("error"); e != "" {
		c.message(w, r, http.StatusUnauthorized, "Not signed in", "The sign-in did not complete: "+q.Get("error_description"), c.base)
		return
	}
	p, code, err := c.cfg.Directory.RedeemAuthCode(r.Context(), q.Get("code"), ClientID, c.redirectURI(), f.Verifier)
	if err != nil {
		if fault.KindOf(err) != fault.Unauthenticated {
			c.cfg.Log.ErrorContext(r.Context(), "redeeming the console's code", "err", err)
		}
		c.message(w, r, http.StatusUnauthorized, "Not signed in", "The sign-in's code was refused: sign in again.", c.base)
		return
	}
	if p.Kind != store.KindUser {
		c.message(w, r, http.StatusForbidden, "Not signed in", "Only users sign in to the console.", c.base)
		return
	}
	tok, err := c.cfg.Directory.StartSession(r.Context(), p, code.AMR, code.AuthTime)
	if err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "starting a console session", "err", err)
		c.message(w, r, http.StatusServiceUnavailable, "Try again later", "The session could not be started.", "")
		return
	}
	if c.cfg.NoteCaller != nil {
		c.cfg.NoteCaller(r, &identity.Caller{ObjectID: p.ID, TenantID: c.cfg.Directory.TenantID(), Kind: p.Kind, UPN: p.UPN, AMR: code.AMR})
	}
	setCookie(w, sessionCookie, tok, identity.SessionLifetime)
	http.Redirect(w, r, c.base+f.Next, http.StatusFound)
}

// signOut ends the session, here and on every node.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if err := c.cfg.Directory.EndSession(r.Context(), sessionToken(r)); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "ending a console session", "err", err)
		c.message(w, r, http.StatusServiceUnavailable, "Try again", "The session could not be ended now.", "")
		return
	}
	dropCookie(w, sessionCookie)
	if r.PostForm.Get("again") == "access" { // a new sign-in, for a second factor
		c.startSignIn(w, r)
		return
	}
	ctx := context.WithValue(r.Context(), sessionKey{}, (*identity.Session)(nil))
	c.message(w, r.WithContext(ctx), http.StatusOK, "Signed out", "You are signed out of the Keyward console.", c.base)
}

func setCookie(w http.ResponseWriter, name, value string, life time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(life / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func dropCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
