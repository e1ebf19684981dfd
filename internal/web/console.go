// Package web is the console: server-rendered pages for the people of the
// story (My access, Approvals, PIM settings, HSMs, Audit). It is a client
// of the other surfaces: every read and every change is an API call made
// with the signed-in user's own token, through the server's front door, so
// it meets the same authorization, the same refusals and the same audit
// record as a call from az or an SDK. The console holds no rights of its
// own; it only renders what the user's calls return.
//
// Sign-in is the authorization-code flow with PKCE against the server's
// own token service, the console being a registered public client. A
// session is a cookie (__Host-, Secure, HttpOnly, SameSite=Strict) naming
// an identity.Session, ended by sign-out; every form carries a CSRF token
// bound to the session; pages run no script.
package web

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/identity"
)

//go:embed templates static
var files embed.FS

// Config is what the console is built from.
type Config struct {
	Directory *identity.Directory
	Tokens    *identity.TokenService
	// API is the server's front door: the console's calls go through it.
	API http.Handler
	// Authority is the URL (ending in "/") of the token service; the
	// console is served under it, at console/.
	Authority string
	// Management and Graph are the URLs (ending in "/") of the resource
	// manager and the directory; HSMURI gives an HSM's data-plane URL.
	Management, Graph string
	HSMURI            func(name string) string
	// Subscription is the resource manager's one subscription id.
	Subscription string
	// ARMResource, GraphResource and HSMResource are the token audiences.
	ARMResource, GraphResource, HSMResource string
	// ReachableHSMs names the HSMs where the caller holds a data-plane
	// role: the HSMs page lists them beside those the resource manager
	// shows the caller.
	ReachableHSMs func(ctx context.Context, c *identity.Caller) ([]string, error)
	// NoteCaller names the signed-in user in the page request's audit
	// record.
	NoteCaller func(r *http.Request, c *identity.Caller)
	Log        *slog.Logger
}

// Console serves the pages.
type Console struct {
	cfg    Config
	base   string // the console's URL, ending in "/"
	origin string // scheme://host[:port] of base
	host   string // the host[:port] of base
	pages  map[string]*template.Template
	mux    *http.ServeMux
}

// ClientID is the console's public client id.
const ClientID = identity.KeywardConsoleClientID

// New returns the console and registers it as a public client.
func New(cfg Config) (*Console, error) {
	u, err := url.Parse(cfg.Authority)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, base: cfg.Authority + "console/", origin: u.Scheme + "://" + u.Host, host: u.Host, pages: map[string]*template.Template{}}
	cfg.Directory.RegisterPublicClient(identity.PublicClient{ID: ClientID, Name: "Keyward console", RedirectURIs: []string{c.redirectURI()}})
	funcs := template.FuncMap{"when": when, "date": date, "pct": pct,
		"hoursList": func() []string { return []string{"1", "2", "4", "8", "12", "24"} },
		"add":       func(a, b int) int { return a + b }, "duration": humanDuration, "words": words}
	for _, name := range []string{"access", "approvals", "settings", "hsms", "hsm", "audit", "message"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		c.pages[name] = t
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /console/static/", c.static)
	m.HandleFunc("GET /console/signin", c.signedIn)
	m.HandleFunc("POST /console/signout", c.user(c.signOut))
	m.HandleFunc("GET /console/{$}", c.user(c.access))
	m.HandleFunc("GET /console/access", c.user(c.access))
	m.HandleFunc("POST /console/access/activate", c.user(c.activate))
	m.HandleFunc("POST /console/access/deactivate", c.user(c.deactivate))
	m.HandleFunc("POST /console/access/cancel", c.user(c.cancel))
	m.HandleFunc("GET /console/approvals", c.user(c.approvals))
	m.HandleFunc("POST /console/approvals/decide", c.user(c.decide))
	m.HandleFunc("GET /console/settings", c.user(c.settings))
	m.HandleFunc("POST /console/settings/policy", c.user(c.patchRule))
	m.HandleFunc("GET /console/hsms", c.user(c.hsms))
	m.HandleFunc("GET /console/hsms/{name}", c.user(c.hsm))
	m.HandleFunc("GET /console/audit", c.user(c.audit))
	c.mux = m
	return c, nil
}

func (c *Console) redirectURI() string { return c.base + "signin" }

// ServeHTTP serves the console's paths. A request at another host than
// the console's own is sent there first: cookies belong to one origin.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route.RecordOf(r.Context()).Operation = "Console " + r.Method + " " + pageName(r.URL.Path)
	pageHeaders(w)
	if !strings.EqualFold(r.Host, c.host) {
		if r.Method != http.MethodGet {
			c.message(w, r, http.StatusMisdirectedRequest, "Wrong address", "The console answers only at "+c.base+".", "")
			return
		}
		http.Redirect(w, r, c.base, http.StatusFound)
		return
	}
	if r.URL.Path == "/console" { // the front door drops a trailing slash
		u := *r.URL
		u.Path = "/console/"
		r = r.Clone(r.Context())
		r.URL = &u
	}
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.message(w, r, http.StatusNotFound, "Not found", "The console has no page at this address.", c.base)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// pageName is the console path without its ids, for the audit record.
func pageName(p string) string {
	rest := strings.TrimPrefix(p, "/console")
	if strings.HasPrefix(rest, "/hsms/") {
		return "/hsms/{name}"
	}
	if strings.HasPrefix(rest, "/static/") {
		return "/static"
	}
	if rest == "" {
		return "/"
	}
	return rest
}

// pageHeaders are every console answer's: nothing framed, cached, sniffed
// or run; forms go only to the console.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on a form's POST, and the origin check needs the real one.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/console/")
	b, err := fs.ReadFile(files, name)
	if err != nil || !strings.HasSuffix(name, ".css") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// page is what every page's layout shows.
type page struct {
	Base, Title, Nav, CSRF string
	User                   string
	Flash, Error           string
	Data                   any
}

// render writes page name with data.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Base = c.base
	if s := sessionOf(r); s != nil {
		p.User = s.User.UPN
		if p.User == "" {
			p.User = s.User.DisplayName
		}
		p.CSRF = c.csrfToken(s)
	}
	if p.Flash == "" {
		p.Flash = flashes[r.URL.Query().Get("done")]
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.pages[name].Execute(w, p); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "rendering a console page", "page", name, "err", err)
	}
}

// messageData is what a message page says.
type messageData struct {
	Lines       []string
	Link        string
	SignInAgain bool   // offer a new sign-in (for MFA)
	Detail      string // the API's own words, folded away
}

// message renders a page that only says something.
func (c *Console) message(w http.ResponseWriter, r *http.Request, status int, title, text, link string) {
	c.render(w, r, status, "message", page{Title: title, Data: messageData{Lines: []string{text}, Link: link}})
}

// done sends the browser back to a page after a change (POST, redirect,
// GET), with a line saying what happened: one of flashes.
func (c *Console) done(w http.ResponseWriter, r *http.Request, path, flash string) {
	http.Redirect(w, r, c.base+path+"?done="+url.QueryEscape(flash), http.StatusSeeOther)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func date(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02")
}

func pct(n, of int) int {
	if of == 0 {
		return 0
	}
	return n * 100 / of
}
