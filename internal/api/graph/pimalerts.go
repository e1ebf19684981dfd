package graph

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/pim"
)

const alertBase = "/beta/identityGovernance/roleManagementAlerts/"

// pimAlertOperations are PIM's alerts in Entra's shapes (Graph beta):
// alerts, their definitions, configurations and incidents, one of each per
// alert type, with ids DirectoryRole_{tenantId}_{type}. Keyward raises
// them for every PIM-governed group and role (Entra: directory roles only),
// so an incident names its target: a group's groupId and accessId, or an
// Azure role's roleDefinitionId and scope. Reading and changing them needs
// a Global or Privileged Role Administrator.
func (a *API) pimAlertOperations() []route.Op {
	op := func(name, method, pattern string, h handler) route.Op {
		return route.Op{Name: name, Method: method, Pattern: pattern, Handle: a.withPIM(a.alertAdmin(h))}
	}
	perm := "microsoft.directory/privilegedIdentityManagement/allProperties/"
	return []route.Op{
		op(perm+"read", http.MethodGet, alertBase+"alerts", a.listAlerts),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/refresh", a.refreshAlerts),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/microsoft.graph.refresh", a.refreshAlerts),
		op(perm+"read", http.MethodGet, alertBase+"alerts/{id}", a.getAlert),
		op(perm+"allTasks", http.MethodPatch, alertBase+"alerts/{id}", a.patchAlert),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/{id}/refresh", a.refreshAlerts),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/{id}/microsoft.graph.refresh", a.refreshAlerts),
		op(perm+"read", http.MethodGet, alertBase+"alerts/{id}/alertIncidents", a.listIncidents),
		op(perm+"read", http.MethodGet, alertBase+"alerts/{id}/alertIncidents/{incident}", a.getIncident),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/{id}/alertIncidents/{incident}/remediate", a.remediateIncident),
		op(perm+"allTasks", http.MethodPost, alertBase+"alerts/{id}/alertIncidents/{incident}/microsoft.graph.remediate", a.remediateIncident),
		op(perm+"read", http.MethodGet, alertBase+"alertDefinitions", a.listAlertDefinitions),
		op(perm+"read", http.MethodGet, alertBase+"alertDefinitions/{id}", a.getAlertDefinition),
		op(perm+"read", http.MethodGet, alertBase+"alertConfigurations", a.listAlertConfigurations),
		op(perm+"read", http.MethodGet, alertBase+"alertConfigurations/{id}", a.getAlertConfiguration),
		op(perm+"allTasks", http.MethodPatch, alertBase+"alertConfigurations/{id}", a.patchAlertConfiguration),
	}
}

// alertAdmin lets only Global and Privileged Role Administrators through
// (Keyward has no reader roles), and records the decision.
func (a *API) alertAdmin(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := a.pimCaller(r, true)
		if err != nil {
			return err
		}
		if !c.Admin {
			return ErrForbidden
		}
		return h(w, r)
	}
}

// alertDefinition is the fixed part of an alert type, as Entra words it.
type alertDefinition struct {
	typ, configType, incidentType                                        string
	displayName, description, severity, impact, mitigation, howToPrevent string
}

var alertDefinitions = []alertDefinition{
	{
		typ: pim.AlertOutsidePIM, configType: "rolesAssignedOutsidePrivilegedIdentityManagementAlertConfiguration",
		incidentType: "rolesAssignedOutsidePrivilegedIdentityManagementAlertIncident",
		displayName:  "Roles are being assigned outside of Privileged Identity Management",
		description:  "Privileged role assignments made outside of Privileged Identity Management are not properly monitored and may indicate an active attack.",
		severity:     "high",
		impact:       "Privileged role assignments made outside of Privileged Identity Management are not properly monitored and may indicate an active attack.",
		mitigation:   "Review the users in the list and remove them from privileged roles (or groups) assigned outside of Privileged Identity Management.",
		howToPrevent: "Investigate where users are being assigned privileged roles outside of Privileged Identity Management and prohibit future assignments from there.",
	},
	{
		typ: pim.AlertSequential, configType: "sequentialActivationRenewalsAlertConfiguration",
		incidentType: "sequentialActivationRenewalsAlertIncident",
		displayName:  "Roles are being activated too frequently",
		description:  "There were too many reactivations of the same role within the time allowed in the settings: {0} activations within {1}.",
		severity:     "low",
		impact:       "Multiple activations of the same privileged role by the same user is a sign of an attack or of a maximum activation duration that is too short.",
		mitigation:   "Review the users in the list and ensure that the maximum activation duration for their privileged role is long enough for them to complete their tasks.",
		howToPrevent: "Ensure that the maximum activation duration for privileged roles is long enough for users to complete their tasks; require MFA and approval for privileged roles.",
	},
	{
		typ: pim.AlertNoMFA, configType: "noMfaOnRoleActivationAlertConfiguration",
		incidentType: "noMfaOnRoleActivationAlertIncident",
		displayName:  "Roles don't require multi-factor authentication for activation",
		description:  "Without multi-factor authentication, compromised users can activate privileged roles.",
		severity:     "medium",
		impact:       "Without multi-factor authentication, compromised users can activate privileged roles.",
		mitigation:   "Review the list of roles (and groups) and require multi-factor authentication for every activation of them.",
		howToPrevent: "Require MFA for every activation of every privileged role and PIM-governed group.",
	},
}

func (a *API) alertID(typ string) string { return "DirectoryRole_" + a.dir.TenantID() + "_" + typ }

// alertType reads an alert (definition, configuration) id.
func (a *API) alertType(id string) (alertDefinition, error) {
	for _, d := range alertDefinitions {
		if strings.EqualFold(id, a.alertID(d.typ)) {
			return d, nil
		}
	}
	return alertDefinition{}, fault.Errorf(fault.NotFound, "Request_ResourceNotFound", "There is no alert %q.", id)
}

// alertScope checks the list filter Entra requires.
func alertScope(r *http.Request) error {
	q := r.URL.Query().Get("$filter")
	f, err := parseFilter(q)
	if q == "" || err != nil || len(f) != 2 || f["scopeid"] != "/" || !strings.EqualFold(f["scopetype"], "DirectoryRole") {
		return fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "$filter=scopeId eq '/' and scopeType eq 'DirectoryRole' is required")
	}
	return nil
}

// expand reads $expand: alertIncidents, alertDefinition,
// alertConfiguration or *, comma-separated.
func expand(r *http.Request) (map[string]bool, error) {
	out := map[string]bool{}
	q := r.URL.Query().Get("$expand")
	if q == "" {
		return out, nil
	}
	for _, e := range strings.Split(q, ",") {
		switch e = strings.TrimSpace(e); strings.ToLower(e) {
		case "*":
			out["alertincidents"], out["alertdefinition"], out["alertconfiguration"] = true, true, true
		case "alertincidents", "alertdefinition", "alertconfiguration":
			out[strings.ToLower(e)] = true
		default:
			return nil, fault.Errorf(fault.Invalid, "Request_UnsupportedQuery", "$expand supports alertIncidents, alertDefinition, alertConfiguration and *, not %q", e)
		}
	}
	return out, nil
}

func (a *API) alertState(r *http.Request, typ string) (*pim.Alert, error) {
	all, err := a.pim.Alerts(r.Context())
	if err != nil {
		return nil, err
	}
	for _, al := range all {
		if al.Type == typ {
			return al, nil
		}
	}
	return nil, fault.Errorf(fault.NotFound, "Request_ResourceNotFound", "There is no alert %q.", typ)
}

// neverFired is Entra's lastModifiedDateTime of an alert that never fired.
const neverFired = "0001-01-01T08:00:00Z"

func (a *API) alertJSON(r *http.Request, d alertDefinition, al *pim.Alert, exp map[string]bool) map[string]any {
	id := a.alertID(d.typ)
	m := map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementAlert", "id": id, "alertDefinitionId": id,
		"scopeId": "/", "scopeType": "DirectoryRole", "incidentCount": len(al.Incidents), "isActive": al.IsActive,
		"lastModifiedDateTime": neverFired, "lastScannedDateTime": gTime(al.LastScanned)}
	if !al.LastModified.IsZero() {
		m["lastModifiedDateTime"] = gTime(al.LastModified)
	}
	if exp["alertincidents"] {
		m["alertIncidents"] = a.incidentsJSON(r, d, al)
	}
	if exp["alertdefinition"] {
		m["alertDefinition"] = a.definitionJSON(d)
	}
	if exp["alertconfiguration"] {
		m["alertConfiguration"] = a.configurationJSON(d, al)
	}
	return m
}

func (a *API) definitionJSON(d alertDefinition) map[string]any {
	return map[string]any{"@odata.type": "#microsoft.graph.unifiedRoleManagementAlertDefinition", "id": a.alertID(d.typ),
		"scopeId": "/", "scopeType": "DirectoryRole", "displayName": d.displayName, "description": d.description,
		"severityLevel": d.severity, "securityImpact": d.impact, "mitigationSteps": d.mitigation, "howToPrevent": d.howToPrevent,
		"isRemediatable": false, "isConfigurable": true}
}

func (a *API) configurationJSON(d alertDefinition, al *pim.Alert) map[string]any {
	id := a.alertID(d.typ)
	m := map[string]any{"@odata.type": "#microsoft.graph." + d.configType, "id": id, "alertDefinitionId": id,
		"scopeId": "/", "scopeType": "DirectoryRole", "isEnabled": al.IsEnabled}
	if d.typ == pim.AlertSequential {
		m["timeIntervalBetweenActivations"], m["sequentialActivationCounterThreshold"] = al.TimeIntervalBetweenActivations, al.SequentialActivationThreshold
	}
	return m
}

// incidentSpace makes incidents' GUIDs from the core's incident ids.
var incidentSpace = uuid.MustParse("5c0b7f0e-3f55-4f7e-9a3c-2d7f1b0c9e41")

func incidentID(in pim.Incident) string { return uuid.NewSHA1(incidentSpace, []byte(in.ID)).String() }

// incidentJSON is an incident in Entra's shape. Its role fields name the
// target: for a group, roleDefinitionId and roleTemplateId are the access
// ("member" or "owner", as Graph's group policies name them) and groupId,
// accessId say which group; for an Azure role, roleDefinitionId is the
// full definition id, roleTemplateId its GUID, and scope the scope.
func (a *API) incidentJSON(r *http.Request, d alertDefinition, in pim.Incident) map[string]any {
	m := map[string]any{"@odata.type": "#microsoft.graph." + d.incidentType, "id": incidentID(in)}
	t := in.Target
	if t.Kind == pim.KindGroup {
		name := t.GroupID
		if g, err := a.dir.Get(r.Context(), t.GroupID); err == nil {
			name = g.DisplayName
		}
		m["roleDefinitionId"], m["roleTemplateId"] = t.AccessID, t.AccessID
		m["roleDisplayName"] = strings.ToUpper(t.AccessID[:min(1, len(t.AccessID))]) + t.AccessID[min(1, len(t.AccessID)):] + " of " + name
		m["groupId"], m["accessId"], m["scope"] = t.GroupID, t.AccessID, "/groups/"+t.GroupID
	} else {
		m["roleDefinitionId"], m["roleTemplateId"], m["roleDisplayName"] = t.RoleDefinitionID, t.RoleDefinitionID[strings.LastIndex(t.RoleDefinitionID, "/")+1:], t.RoleDefinitionID
		if role, ok := armrbac.RoleByID(t.RoleDefinitionID); ok {
			m["roleDisplayName"] = role.Name
		}
		m["scope"] = t.Scope
	}
	if d.typ == pim.AlertNoMFA {
		return m
	}
	m["assigneeId"], m["assigneeDisplayName"], m["assigneeUserPrincipalName"] = in.PrincipalID, nil, nil
	if p, err := a.dir.Get(r.Context(), in.PrincipalID); err == nil {
		m["assigneeDisplayName"], m["assigneeUserPrincipalName"] = p.DisplayName, strp(p.UPN)
	}
	switch d.typ {
	case pim.AlertSequential:
		m["activationCount"], m["sequenceStartDateTime"], m["sequenceEndDateTime"] = in.ActivationCount, gTime(in.SequenceStart), gTime(in.SequenceEnd)
	case pim.AlertOutsidePIM:
		m["assignmentCreatedDateTime"] = gTime(in.At)
	}
	return m
}

func (a *API) incidentsJSON(r *http.Request, d alertDefinition, al *pim.Alert) []map[string]any {
	out := []map[string]any{}
	for _, in := range al.Incidents {
		out = append(out, a.incidentJSON(r, d, in))
	}
	return out
}

// ---- handlers ----

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request) error {
	if err := alertScope(r); err != nil {
		return err
	}
	exp, err := expand(r)
	if err != nil {
		return err
	}
	all, err := a.pim.Alerts(r.Context())
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, d := range alertDefinitions {
		for _, al := range all {
			if al.Type == d.typ {
				out = append(out, a.alertJSON(r, d, al, exp))
			}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// alertOf finds the alert of the path's id.
func (a *API) alertOf(r *http.Request) (alertDefinition, *pim.Alert, error) {
	d, err := a.alertType(r.PathValue("id"))
	if err != nil {
		return d, nil, err
	}
	al, err := a.alertState(r, d.typ)
	return d, al, err
}

func (a *API) getAlert(w http.ResponseWriter, r *http.Request) error {
	exp, err := expand(r)
	if err != nil {
		return err
	}
	d, al, err := a.alertOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.alertJSON(r, d, al, exp))
	return nil
}

// patchAlert dismisses an alert ({"isActive": false}); 204.
func (a *API) patchAlert(w http.ResponseWriter, r *http.Request) error {
	d, err := a.alertType(r.PathValue("id"))
	if err != nil {
		return err
	}
	var in struct {
		IsActive *bool `json:"isActive"`
	}
	if err := httpx.ReadJSON(w, r, &in); err != nil {
		return err
	}
	if in.IsActive == nil || *in.IsActive {
		return fault.Errorf(fault.Invalid, "Request_BadRequest", "only isActive false (dismiss) may be set; refresh re-activates an alert with incidents")
	}
	if _, err := a.pim.ConfigureAlert(r.Context(), d.typ, pim.AlertConfig{IsActive: in.IsActive}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// refreshAlerts re-activates the alert of the path's id (every alert
// without one) that has incidents and answers 202 with the operation's
// Location. Keyward raises alerts as their causes happen, so a refresh
// has nothing else to scan.
func (a *API) refreshAlerts(w http.ResponseWriter, r *http.Request) error {
	ds := alertDefinitions
	if id := r.PathValue("id"); id != "" {
		d, err := a.alertType(id)
		if err != nil {
			return err
		}
		ds = []alertDefinition{d}
	} else {
		var in struct{ ScopeID, ScopeType string }
		if err := httpx.ReadJSON(w, r, &in); err != nil {
			return err
		}
		if in.ScopeID != "/" || !strings.EqualFold(in.ScopeType, "DirectoryRole") {
			return fault.Errorf(fault.Invalid, "Request_BadRequest", "scopeId must be \"/\" and scopeType \"DirectoryRole\"")
		}
	}
	active := true
	for _, d := range ds {
		al, err := a.alertState(r, d.typ)
		if err != nil {
			return err
		}
		if len(al.Incidents) > 0 && !al.IsActive {
			if _, err := a.pim.ConfigureAlert(r.Context(), d.typ, pim.AlertConfig{IsActive: &active}); err != nil {
				return err
			}
		}
	}
	loc := "https://graph.microsoft.com" + alertBase + "operations/refresh:" + a.alertID(ds[0].typ)
	if len(ds) > 1 {
		loc = "https://graph.microsoft.com" + alertBase + "operations/refresh:DirectoryRole_" + a.dir.TenantID()
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request) error {
	d, al, err := a.alertOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": a.incidentsJSON(r, d, al)})
	return nil
}

func (a *API) incidentOf(r *http.Request) (alertDefinition, *pim.Incident, error) {
	d, al, err := a.alertOf(r)
	if err != nil {
		return d, nil, err
	}
	for _, in := range al.Incidents {
		if strings.EqualFold(incidentID(in), r.PathValue("incident")) {
			return d, &in, nil
		}
	}
	return d, nil, fault.Errorf(fault.NotFound, "Request_ResourceNotFound", "The alert has no incident %q.", r.PathValue("incident"))
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) error {
	d, in, err := a.incidentOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.incidentJSON(r, d, *in))
	return nil
}

// remediateIncident: no Keyward alert definition is remediatable.
func (a *API) remediateIncident(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := a.incidentOf(r); err != nil {
		return err
	}
	return fault.Errorf(fault.Invalid, "Request_BadRequest", "The alert definition is not remediatable.")
}

func (a *API) listAlertDefinitions(w http.ResponseWriter, r *http.Request) error {
	if err := alertScope(r); err != nil {
		return err
	}
	out := []map[string]any{}
	for _, d := range alertDefinitions {
		out = append(out, a.definitionJSON(d))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) getAlertDefinition(w http.ResponseWriter, r *http.Request) error {
	d, err := a.alertType(r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.definitionJSON(d))
	return nil
}

func (a *API) listAlertConfigurations(w http.ResponseWriter, r *http.Request) error {
	if err := alertScope(r); err != nil {
		return err
	}
	all, err := a.pim.Alerts(r.Context())
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, d := range alertDefinitions {
		for _, al := range all {
			if al.Type == d.typ {
				out = append(out, a.configurationJSON(d, al))
			}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (a *API) getAlertConfiguration(w http.ResponseWriter, r *http.Request) error {
	d, al, err := a.alertOf(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a.configurationJSON(d, al))
	return nil
}

// patchAlertConfiguration sets isEnabled and, for
// SequentialActivationRenewalsAlert, timeIntervalBetweenActivations and
// sequentialActivationCounterThreshold; 204.
func (a *API) patchAlertConfiguration(w http.ResponseWriter, r *http.Request) error {
	d, err := a.alertType(r.PathValue("id"))
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := httpx.ReadJSON(w, r, &raw); err != nil {
		return err
	}
	var in struct {
		ODataType string `json:"@odata.type"`
		IsEnabled *bool  `json:"isEnabled"`
		Interval  string `json:"timeIntervalBetweenActivations"`
		Threshold *int   `json:"sequentialActivationCounterThreshold"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &in); err != nil {
		return fault.Invalidf("the alert configuration has a field of the wrong type")
	}
	for k := range raw {
		switch k {
		case "@odata.type", "isEnabled", "id", "alertDefinitionId", "scopeId", "scopeType":
		case "timeIntervalBetweenActivations", "sequentialActivationCounterThreshold":
			if d.typ != pim.AlertSequential {
				return fault.Errorf(fault.Invalid, "Request_BadRequest", "%s is a setting of %s only", k, pim.AlertSequential)
			}
		default:
			return fault.Errorf(fault.Invalid, "Request_BadRequest", "%s has no setting %q", d.typ, k)
		}
	}
	if in.ODataType != "" && !strings.EqualFold(strings.TrimPrefix(in.ODataType, "#"), "microsoft.graph."+d.configType) {
		return fault.Errorf(fault.Invalid, "Request_BadRequest", "@odata.type must be #microsoft.graph.%s", d.configType)
	}
	cfg := pim.AlertConfig{IsEnabled: in.IsEnabled, Interval: in.Interval}
	if in.Threshold != nil {
		if *in.Threshold <= 0 {
			return pim.ErrBadRequest.With("sequentialActivationCounterThreshold must be 2 to 100.")
		}
		cfg.Threshold = *in.Threshold
	}
	if _, err := a.pim.ConfigureAlert(r.Context(), d.typ, cfg); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
