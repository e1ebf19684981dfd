package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/identity"
)

// HSMs: each HSM the user can see (in the resource manager, or through a
// data-plane role), its activation state, its keys (type, versions,
// enabled, expiry, rotation policy) and its role assignments.

const (
	armVersion  = "api-version=2023-07-01"
	dataVersion = "api-version=7.4"
	// keysPerPage bounds the keys one page shows: each costs three calls
	// (and three audit records).
	keysPerPage = 25
)

type hsmRow struct {
	Name, Location, State, Activation string
	InARM                             bool
}

type armHSM struct {
	Name       string `json:"name"`
	Location   string `json:"location"`
	Properties struct {
		ProvisioningState        string `json:"provisioningState"`
		HsmURI                   string `json:"hsmUri"`
		SecurityDomainProperties struct {
			ActivationStatus string `json:"activationStatus"`
		} `json:"securityDomainProperties"`
	} `json:"properties"`
}

func (c *Console) hsms(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	rows, problems := c.hsmList(a, r)
	c.render(w, r, http.StatusOK, "hsms", page{Title: "HSMs", Nav: "hsms", Data: struct {
		HSMs     []hsmRow
		Problems []string
	}{rows, problems}})
}

// hsmList lists the HSMs the resource manager shows the user, and those
// where the user holds a data-plane role.
func (c *Console) hsmList(a *api, r *http.Request) ([]hsmRow, []string) {
	var problems []string
	var list graphList[armHSM]
	if err := a.arm("GET", "/subscriptions/"+c.cfg.Subscription+"/providers/Microsoft.KeyVault/managedHSMs?"+armVersion, nil, &list); err != nil {
		problems = append(problems, describe("the resource manager's list", err))
	}
	var rows []hsmRow
	seen := map[string]bool{}
	for _, h := range list.Value {
		rows = append(rows, hsmRow{Name: h.Name, Location: h.Location, State: h.Properties.ProvisioningState,
			Activation: h.Properties.SecurityDomainProperties.ActivationStatus, InARM: true})
		seen[strings.ToLower(h.Name)] = true
	}
	if c.cfg.ReachableHSMs != nil {
		s := sessionOf(r)
		names, err := c.cfg.ReachableHSMs(r.Context(), &identity.Caller{ObjectID: s.User.ID, TenantID: c.cfg.Directory.TenantID(),
			Kind: s.User.Kind, UPN: s.User.UPN, AMR: s.AMR, AuthTime: s.AuthTime})
		if err != nil {
			problems = append(problems, describe("the HSMs where you hold a role", err))
		}
		for _, n := range names {
			if !seen[strings.ToLower(n)] {
				rows = append(rows, hsmRow{Name: n})
			}
		}
	}
	slices.SortFunc(rows, func(x, y hsmRow) int { return strings.Compare(x.Name, y.Name) })
	return rows, problems
}

// keyRow is one key of the HSM page.
type keyRow struct {
	Name, Type  string
	Versions    string
	Enabled     bool
	Expires     time.Time
	ExpiresSoon bool // within 30 days
	Expired     bool
	Rotation    string
	Managed     bool
}

type assignmentRow struct {
	Who, Kind, Role, Scope, Since, Standing string
	// Members are a group's members now, and until when those activated
	// through PIM stay (as far as the user may read the schedules).
	Members []memberRow
}

type memberRow struct {
	Name  string
	Until time.Time
}

type hsmData struct {
	Name, Activation, State string
	InARM                   bool
	Keys                    []keyRow
	MoreKeys                string // the next keys' page, if any
	Assignments             []assignmentRow
	Problems                []string
	Now                     time.Time
}

// keyItem is a key in a list, and a key bundle's parts the page reads.
type keyItem struct {
	Kid        string `json:"kid"`
	Managed    bool   `json:"managed"`
	Attributes struct {
		Enabled bool  `json:"enabled"`
		Exp     int64 `json:"exp"`
	} `json:"attributes"`
	Key struct {
		Kid string `json:"kid"`
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		N   string `json:"n"`
	} `json:"key"`
}

func (c *Console) hsm(w http.ResponseWriter, r *http.Request) {
	name := strings.ToLower(r.PathValue("name"))
	if name == "" || len(name) > 24 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		c.message(w, r, http.StatusNotFound, "No such HSM", "That is not an HSM's name.", c.base+"hsms")
		return
	}
	a := c.apiFor(r)
	d := hsmData{Name: name, Now: time.Now()}
	problem := func(what string, err error) { d.Problems = append(d.Problems, describe(what, err)) }
	rows, _ := c.hsmList(a, r)
	known := slices.ContainsFunc(rows, func(h hsmRow) bool { return strings.EqualFold(h.Name, name) })
	if !known {
		c.message(w, r, http.StatusNotFound, "No such HSM", "You can see no HSM named "+name+".", c.base+"hsms")
		return
	}
	for _, h := range rows {
		if strings.EqualFold(h.Name, name) {
			d.Activation, d.State, d.InARM = h.Activation, h.State, h.InARM
		}
	}

	// Keys, a page at a time: the data plane's nextLink, kept in the
	// console's link (only its query: the path is always /keys).
	keysPath := "/keys?maxresults=" + strconv.Itoa(keysPerPage) + "&" + dataVersion
	if next := r.URL.Query().Get("keys"); next != "" {
		if q, err := url.ParseQuery(next); err == nil && q.Get("$skiptoken") != "" && len(next) < 2000 {
			keysPath = "/keys?" + url.Values{"maxresults": {strconv.Itoa(keysPerPage)}, "$skiptoken": {q.Get("$skiptoken")}, "api-version": {"7.4"}}.Encode()
		}
	}
	var pg struct {
		Value    []keyItem `json:"value"`
		NextLink string    `json:"nextLink"`
	}
	if err := a.hsm(name, "GET", keysPath, nil, &pg); err != nil {
		problem("the keys", err)
	}
	keys := pg.Value
	if len(keys) > keysPerPage {
		keys = keys[:keysPerPage]
	}
	if u, err := url.Parse(pg.NextLink); err == nil && pg.NextLink != "" && u.Query().Get("$skiptoken") != "" {
		d.MoreKeys = c.base + "hsms/" + name + "?" + url.Values{"keys": {u.RawQuery}}.Encode()
	}
	for _, k := range keys {
		kname := k.Kid[strings.LastIndex(k.Kid, "/")+1:]
		row := keyRow{Name: kname, Enabled: k.Attributes.Enabled, Managed: k.Managed}
		if k.Attributes.Exp != 0 {
			row.Expires = time.Unix(k.Attributes.Exp, 0)
			row.Expired = row.Expires.Before(d.Now)
			row.ExpiresSoon = !row.Expired && row.Expires.Before(d.Now.Add(30*24*time.Hour))
		}
		path := "/keys/" + url.PathEscape(kname)
		var b keyItem
		if err := a.hsm(name, "GET", path+"?"+dataVersion, nil, &b); err == nil {
			row.Type = keyType(b.Key.Kty, b.Key.Crv, b.Key.N)
		} else {
			row.Type = "?"
		}
		var vs struct {
			Value    []any  `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := a.hsm(name, "GET", path+"/versions?maxresults=25&"+dataVersion, nil, &vs); err == nil {
			row.Versions = strconv.Itoa(len(vs.Value))
			if vs.NextLink != "" {
				row.Versions += "+"
			}
		}
		var rp struct {
			LifetimeActions []struct {
				Trigger struct {
					TimeAfterCreate  string `json:"timeAfterCreate"`
					TimeBeforeExpiry string `json:"timeBeforeExpiry"`
				} `json:"trigger"`
				Action struct {
					Type string `json:"type"`
				} `json:"action"`
			} `json:"lifetimeActions"`
			Attributes struct {
				ExpiryTime string `json:"expiryTime"`
			} `json:"attributes"`
		}
		if err := a.hsm(name, "GET", path+"/rotationpolicy?"+dataVersion, nil, &rp); err == nil {
			var parts []string
			for _, la := range rp.LifetimeActions {
				if strings.EqualFold(la.Action.Type, "rotate") {
					if la.Trigger.TimeAfterCreate != "" {
						parts = append(parts, "rotate "+la.Trigger.TimeAfterCreate+" after creation")
					} else {
						parts = append(parts, "rotate "+la.Trigger.TimeBeforeExpiry+" before expiry")
					}
				}
			}
			if rp.Attributes.ExpiryTime != "" {
				parts = append(parts, "new versions expire after "+rp.Attributes.ExpiryTime)
			}
			row.Rotation = strings.Join(parts, "; ")
		}
		d.Keys = append(d.Keys, row)
	}

	// Role assignments, with the roles' and principals' names.
	var assigns graphList[struct {
		Properties struct {
			Scope            string `json:"scope"`
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
		} `json:"properties"`
	}]
	if err := a.hsm(name, "GET", "/providers/Microsoft.Authorization/roleAssignments?"+dataVersion, nil, &assigns); err != nil {
		problem("role assignments", err)
	} else {
		var defs graphList[struct {
			ID         string `json:"id"`
			Properties struct {
				RoleName string `json:"roleName"`
			} `json:"properties"`
		}]
		roles := map[string]string{}
		if err := a.hsm(name, "GET", "/providers/Microsoft.Authorization/roleDefinitions?"+dataVersion, nil, &defs); err == nil {
			for _, d := range defs.Value {
				roles[strings.ToLower(d.ID)] = d.Properties.RoleName
			}
		}
		var ids []string
		for _, x := range assigns.Value {
			ids = append(ids, x.Properties.PrincipalID)
		}
		names := a.names(ids)
		members := map[string][]memberRow{} // a group's, asked once a page
		for _, x := range assigns.Value {
			p := x.Properties
			role := roles[strings.ToLower(p.RoleDefinitionID)]
			if role == "" {
				role = p.RoleDefinitionID[strings.LastIndex(p.RoleDefinitionID, "/")+1:]
			}
			row := assignmentRow{Who: names.of(p.PrincipalID), Role: role, Scope: p.Scope, Standing: "standing"}
			if names.isGroup(p.PrincipalID) {
				m, ok := members[p.PrincipalID]
				if !ok {
					m = a.groupMembers(p.PrincipalID)
					members[p.PrincipalID] = m
				}
				row.Members = m
			}
			d.Assignments = append(d.Assignments, row)
		}
		slices.SortFunc(d.Assignments, func(x, y assignmentRow) int { return strings.Compare(x.Role+x.Who, y.Role+y.Who) })
	}
	c.render(w, r, http.StatusOK, "hsm", page{Title: "HSM " + name, Nav: "hsms", Data: d})
}

// keyType names a key's type as the portal does: RSA 3072, EC P-256, oct-HSM 256.
func keyType(kty, crv, n string) string {
	switch {
	case crv != "":
		return kty + " " + crv
	case n != "":
		return kty + " " + strconv.Itoa(len(strings.TrimRight(n, "="))*6/8*8)
	}
	return kty
}

// groupMembers lists group id's members now, with the end of each PIM
// activation the user may read.
func (a *api) groupMembers(id string) []memberRow {
	var members graphList[struct {
		ID                string `json:"id"`
		DisplayName       string `json:"displayName"`
		UserPrincipalName string `json:"userPrincipalName"`
	}]
	if err := a.graph("GET", "/v1.0/groups/"+url.PathEscape(id)+"/members", nil, &members); err != nil {
		return nil
	}
	var inForce graphList[schedule]
	filter := url.QueryEscape("groupId eq '" + id + "'")
	if err := a.graph("GET", pimGroups+"assignmentScheduleInstances?$filter="+filter, nil, &inForce); err != nil {
		inForce.Value = nil
	}
	until := map[string]time.Time{}
	for _, s := range inForce.Value {
		if s.AccessID == "member" && s.AssignmentType == "activated" {
			until[strings.ToLower(s.PrincipalID)] = parseTime(s.EndDateTime)
		}
	}
	var out []memberRow
	for _, m := range members.Value {
		name := m.UserPrincipalName
		if name == "" {
			name = m.DisplayName
		}
		out = append(out, memberRow{Name: name, Until: until[strings.ToLower(m.ID)]})
	}
	return out
}
