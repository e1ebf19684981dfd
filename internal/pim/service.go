package pim

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/store"
)

// Store object kinds.
const (
	objPolicy   = "pimPolicy"
	objRequest  = "pimRequest"
	objSchedule = "pimSchedule"
	objApproval = "pimApproval"
	objAlert    = "pimAlert"
)

// Provisioner makes access to targets of one kind real.
type Provisioner interface {
	// Check finds the target and the principal in tx: ErrTargetNotFound
	// (With a message naming what is missing) if either does not exist.
	// It returns the principal's kind.
	Check(ctx context.Context, tx store.Tx, t Target, principalID string) (principalKind string, err error)
	// Grant gives principal access to t from start until end (zero: no
	// end); requestID names the request, for the record.
	Grant(ctx context.Context, tx store.Tx, t Target, principalID string, start, end time.Time, requestID string) error
	// Revoke takes the access a Grant of requestID gave away; nothing to
	// take is no error.
	Revoke(ctx context.Context, tx store.Tx, t Target, principalID, requestID string) error
}

// Config configures a Service.
type Config struct {
	Store store.Store
	// Now is the clock (tests move it).
	Now func() time.Time
	// Groups lists a principal's groups, directly or not (the directory's
	// GroupsOf): approvers named as groups, eligibilities of groups.
	Groups func(ctx context.Context, principalID string) ([]string, error)
	// Events receives Keyward.PIM.* CloudEvents; nil drops them.
	Events *events.Publisher
	// Source is the CloudEvents source.
	Source string
	Log    *slog.Logger
	// Holder names this node for the expiry lease.
	Holder string
}

// Service is PIM.
type Service struct {
	held  atomic.Bool // whether this node holds the expiry lease (Run)
	cfg   Config
	now   func() time.Time
	mu    sync.Mutex
	provs map[string]Provisioner
	// dirty is set when the directory changed: the alert scan looks for
	// members added outside PIM.
	dirty chan struct{}
}

// New returns the PIM service; groups are provisioned as memberships
// bounded in time. Register adds the provisioner of roles.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Holder == "" {
		cfg.Holder = uuid.NewString()
	}
	s := &Service{cfg: cfg, now: cfg.Now, provs: map[string]Provisioner{KindGroup: groupProvisioner{}}, dirty: make(chan struct{}, 1)}
	cfg.Store.Subscribe(func(cs []store.Change) {
		for _, c := range cs {
			if c.Kind == store.ChangePrincipal || c.Kind == store.ChangeAll {
				select {
				case s.dirty <- struct{}{}:
				default:
				}
				return
			}
		}
	})
	return s
}

// Register sets the provisioner of a target kind.
func (s *Service) Register(kind string, p Provisioner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.provs[kind] = p
}

func (s *Service) prov(kind string) (Provisioner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.provs[kind]
	if !ok {
		return nil, ErrBadRequest.With("There is no target of kind %q.", kind)
	}
	return p, nil
}

// ---- stored records ----

func put(ctx context.Context, tx store.Tx, kind, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.PutObject(ctx, &store.Object{Kind: kind, ID: strings.ToLower(id), Data: b})
}

func get[T any](ctx context.Context, tx store.Tx, kind, id string, notFound error) (*T, error) {
	o, err := tx.GetObject(ctx, kind, strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	var v T
	return &v, json.Unmarshal(o.Data, &v)
}

func list[T any](ctx context.Context, tx store.Tx, kind string) ([]*T, error) {
	os, err := tx.ListObjects(ctx, kind, "")
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(os))
	for _, o := range os {
		var v T
		if err := json.Unmarshal(o.Data, &v); err != nil {
			return nil, err
		}
		out = append(out, &v)
	}
	return out, nil
}

func (s *Service) view(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.cfg.Store.View(ctx, fn)
}

// ---- policies ----

// Policy returns t's policy (the default until it is changed).
func (s *Service) Policy(ctx context.Context, t Target) (*Policy, error) {
	var p *Policy
	err := s.view(ctx, func(tx store.Tx) (err error) { p, err = s.policy(ctx, tx, t); return err })
	return p, err
}

func (s *Service) policy(ctx context.Context, tx store.Tx, t Target) (*Policy, error) {
	p, err := get[Policy](ctx, tx, objPolicy, PolicyID(t), ErrPolicyNotFound)
	if errors.Is(err, ErrPolicyNotFound) {
		return DefaultPolicy(t), nil
	}
	return p, err
}

// CheckTarget reports whether t exists (ErrTargetNotFound if not).
func (s *Service) CheckTarget(ctx context.Context, t Target) error {
	p, err := s.prov(t.Kind)
	if err != nil {
		return err
	}
	return s.view(ctx, func(tx store.Tx) error { _, err := p.Check(ctx, tx, t, ""); return err })
}

// PatchRules changes the rules of t's policy that rules name (by id; the
// others keep their values) and returns the whole policy.
func (s *Service) PatchRules(ctx context.Context, t Target, rules []Rule, by string) (*Policy, error) {
	prov, err := s.prov(t.Kind)
	if err != nil {
		return nil, err
	}
	var p *Policy
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := prov.Check(ctx, tx, t, ""); err != nil {
			return err
		}
		if p, err = s.policy(ctx, tx, t); err != nil {
			return err
		}
		for _, r := range rules {
			if err := p.apply(r); err != nil {
				return err
			}
		}
		p.LastModifiedBy, p.LastModified = by, s.now()
		return put(ctx, tx, objPolicy, p.ID, p)
	})
	if err != nil {
		return nil, err
	}
	s.checkNoMFA(ctx, p)
	return p, nil
}

// PoliciesChanged lists the policies changed from their defaults.
func (s *Service) PoliciesChanged(ctx context.Context) ([]*Policy, error) {
	var out []*Policy
	err := s.view(ctx, func(tx store.Tx) (err error) { out, err = list[Policy](ctx, tx, objPolicy); return err })
	return out, err
}

// ---- requests ----

// RequestInput is a new request.
type RequestInput struct {
	// ID is the request's id (ARM clients choose it); "" makes one.
	ID            string
	Kind          string // Eligibility or Assignment
	Target        Target
	PrincipalID   string
	Action        string
	Justification string
	Ticket        Ticket
	Schedule      ScheduleInfo
	// LinkedEligibilityID is the eligibility schedule to activate (optional).
	LinkedEligibilityID string
	// ValidationOnly checks the request and changes nothing.
	ValidationOnly bool
}

// pastTolerance is how far in the past a start may be: clocks differ.
const pastTolerance = 5 * time.Minute

// Submit checks a request against the policy and carries it out: an
// eligibility or assignment is made or removed, an activation is
// provisioned or waits for approval. A request that breaks a rule is
// ErrPolicyValidation naming every failing rule.
func (s *Service) Submit(ctx context.Context, c Caller, in RequestInput) (*Request, error) {
	now := s.now().UTC().Truncate(time.Second)
	action := ParseAction(in.Action)
	switch {
	case in.Kind != Eligibility && in.Kind != Assignment:
		return nil, ErrBadRequest.With("The request kind %q is not eligibility or assignment.", in.Kind)
	case action == "":
		return nil, ErrBadRequest.With("The action %q is not one of %s.", in.Action, strings.Join(actions, ", "))
	case action != AdminAssign && action != AdminRemove && action != SelfActivate && action != SelfDeactivate:
		return nil, ErrBadRequest.With("The action %s is not supported.", action)
	case in.Kind == Eligibility && (action == SelfActivate || action == SelfDeactivate):
		return nil, ErrBadRequest.With("The action %s applies to assignment requests only.", action)
	case in.PrincipalID == "":
		return nil, ErrBadRequest.With("principalId is required.")
	case len(in.Justification) > 1000:
		return nil, ErrBadRequest.With("The justification is longer than 1000 characters.")
	}
	if in.Target.Kind == KindGroup {
		if _, err := uuid.Parse(in.Target.GroupID); err != nil {
			return nil, ErrBadRequest.With("groupId %q is not an object id.", in.Target.GroupID)
		}
		if in.Target.AccessID != "member" && in.Target.AccessID != "owner" {
			return nil, ErrBadRequest.With("accessId %q is not member or owner.", in.Target.AccessID)
		}
		in.Target.GroupID = strings.ToLower(in.Target.GroupID)
	}
	in.PrincipalID = strings.ToLower(in.PrincipalID)
	if IsAdmin(action) && !c.Admin {
		return nil, ErrNotAllowed.With("The caller may not administer privileged access to this target.")
	}
	if !IsAdmin(action) && !strings.EqualFold(in.PrincipalID, c.ObjectID) {
		return nil, ErrNotAllowed.With("A %s request is for the caller only: principalId must be the caller's object id.", action)
	}
	if in.ID == "" {
		in.ID = uuid.NewString()
	}
	in.ID = strings.ToLower(in.ID)
	prov, err := s.prov(in.Target.Kind)
	if err != nil {
		return nil, err
	}
	req := &Request{ID: in.ID, Kind: in.Kind, Target: in.Target, PrincipalID: in.PrincipalID, Action: action, RequestorID: strings.ToLower(c.ObjectID),
		Justification: in.Justification, Ticket: in.Ticket, LinkedEligibilityID: in.LinkedEligibilityID, Created: now, MFA: slices.Contains(c.AMR, "mfa")}
	var start, end time.Time
	if action == AdminAssign || action == SelfActivate {
		if req.Schedule, start, end, err = window(in.Schedule, now); err != nil {
			return nil, err
		}
	}
	var evs []events.Event
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		evs = nil
		if _, err := get[Request](ctx, tx, objRequest, req.ID, ErrRequestNotFound); err == nil {
			return ErrBadRequest.With("A request with id %s exists already.", req.ID)
		}
		pk, err := prov.Check(ctx, tx, in.Target, in.PrincipalID)
		if err != nil {
			return err
		}
		req.PrincipalKind = pk
		pol, err := s.policy(ctx, tx, in.Target)
		if err != nil {
			return err
		}
		switch action {
		case AdminAssign:
			return s.adminAssign(ctx, tx, prov, pol, c, req, start, end, now, in.ValidationOnly, &evs)
		case SelfActivate:
			return s.activate(ctx, tx, prov, pol, c, req, start, end, now, in.ValidationOnly, &evs)
		default:
			return s.remove(ctx, tx, prov, req, now, in.ValidationOnly, &evs)
		}
	})
	if err != nil {
		return nil, err
	}
	s.publish(evs)
	if action == SelfActivate && req.Status == StatusProvisioned && !in.ValidationOnly {
		s.noteActivation(ctx, req)
	}
	return req, nil
}

// window reads a schedule: its start (now if unset) and end (zero: none),
// and returns it normalised: the expiration type named, and only the field
// that goes with it kept (afterDuration its duration, afterDateTime its
// endDateTime, noExpiration neither). A schedule without a type but with a
// duration is afterDuration; one without a type keeps no endDateTime.
func window(si ScheduleInfo, now time.Time) (out ScheduleInfo, start, end time.Time, err error) {
	start = si.Start.UTC().Truncate(time.Second)
	if start.IsZero() {
		start = now
	}
	if start.Before(now.Add(-pastTolerance)) {
		return out, start, end, ErrBadRequest.With("The schedule starts at %s, in the past.", start.Format(time.RFC3339))
	}
	if start.Before(now) {
		start = now
	}
	exp, ok := ParseExpiration(si.Expiration)
	if !ok {
		return out, start, end, ErrBadRequest.With("The expiration type %q is not noExpiration, afterDuration or afterDateTime.", si.Expiration)
	}
	if exp == NotSpecified && strings.TrimSpace(si.Duration) != "" {
		exp = AfterDuration
	}
	out = ScheduleInfo{Start: start, Expiration: exp}
	if si.Expiration == "" && exp == NotSpecified {
		out.Expiration = ""
	}
	switch exp {
	case AfterDuration:
		d, err := ParseDuration(si.Duration)
		if err != nil {
			return out, start, end, ErrBadRequest.With("The duration %q is not an ISO 8601 duration.", si.Duration)
		}
		if d < time.Minute {
			return out, start, end, ErrBadRequest.With("The duration %q is shorter than one minute.", si.Duration)
		}
		end = start.Add(d)
		out.Duration = si.Duration
	case AfterDateTime:
		if si.End.IsZero() {
			return out, start, end, ErrBadRequest.With("An afterDateTime expiration needs an endDateTime.")
		}
		end = si.End.UTC().Truncate(time.Second)
		if !end.After(now) || end.Sub(start) < time.Minute {
			return out, start, end, ErrBadRequest.With("The schedule ends at %s, before it starts or in the past.", end.Format(time.RFC3339))
		}
		out.End = end
	}
	return out, start, end, nil
}

// failing collects rule failures.
type failing []string

func (f *failing) add(name string) {
	if !slices.Contains(*f, name) {
		*f = append(*f, name)
	}
}

func (f failing) err() error {
	if len(f) == 0 {
		return nil
	}
	b, _ := json.Marshal([]string(f))
	return ErrPolicyValidation.With("The following policy rules failed: %s", b)
}

// checkExpiration applies an expiration rule; end zero is no expiration,
// a request with notSpecified takes the maximum.
func checkExpiration(r *Rule, si ScheduleInfo, start time.Time, end *time.Time, f *failing) {
	if r == nil {
		return
	}
	max, err := ParseDuration(r.MaximumDuration)
	if end.IsZero() {
		exp, _ := ParseExpiration(si.Expiration)
		if exp == NotSpecified && r.IsExpirationRequired && err == nil {
			*end = start.Add(max)
			return
		}
		if r.IsExpirationRequired {
			f.add("ExpirationRule")
		}
		return
	}
	if err == nil && end.Sub(start) > max {
		f.add("ExpirationRule")
	}
}

func checkEnablement(r *Rule, c Caller, req *Request, f *failing) {
	if hasEnabled(r, EnableJustification) && missing(req.Justification) {
		f.add("JustificationRule")
	}
	if hasEnabled(r, EnableTicketing) && (missing(req.Ticket.Number) || missing(req.Ticket.System)) {
		f.add("TicketingRule")
	}
	if hasEnabled(r, EnableMFA) && !slices.Contains(c.AMR, "mfa") {
		f.add("MfaRule")
	}
}

// missing reports whether a justification (or ticket field) says nothing:
// it has no letter or digit, only spaces, punctuation or invisible
// characters such as U+200B.
func missing(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

func (s *Service) adminAssign(ctx context.Context, tx store.Tx, prov Provisioner, pol *Policy, c Caller, req *Request, start, end, now time.Time, validate bool, evs *[]events.Event) error {
	var f failing
	expID, enID := RuleExpirationAdminAssignment, RuleEnablementAdminAssignment
	if req.Kind == Eligibility {
		expID, enID = RuleExpirationAdminEligibility, RuleEnablementAdminEligibility
	}
	checkExpiration(pol.Rule(expID), req.Schedule, start, &end, &f)
	checkEnablement(pol.Rule(enID), c, req, &f)
	if err := f.err(); err != nil {
		return err
	}
	scheds, err := list[Schedule](ctx, tx, objSchedule)
	if err != nil {
		return err
	}
	for _, sc := range scheds {
		if sc.Kind == req.Kind && sc.Target.Same(req.Target) && sc.PrincipalID == req.PrincipalID && sc.Status == StatusProvisioned &&
			(sc.End.IsZero() || now.Before(sc.End)) && (sc.Kind == Eligibility || sc.AssignmentType == Assigned) {
			return ErrAssignmentExists
		}
	}
	req.Status = StatusProvisioned
	req.Completed = now
	req.TargetScheduleID = scheduleID(req)
	if validate {
		req.Status = StatusGranted
		return nil
	}
	sc := &Schedule{ID: req.TargetScheduleID, Kind: req.Kind, Target: req.Target, PrincipalID: req.PrincipalID, PrincipalKind: req.PrincipalKind,
		Start: start, End: end, Status: StatusProvisioned, RequestID: req.ID, Created: now, Updated: now}
	typ := EventEligibilityCreated
	if req.Kind == Assignment {
		sc.AssignmentType = Assigned
		if err := prov.Grant(ctx, tx, req.Target, req.PrincipalID, start, end, req.ID); err != nil {
			return err
		}
		typ = EventActivated
	}
	if err := put(ctx, tx, objSchedule, sc.ID, sc); err != nil {
		return err
	}
	*evs = append(*evs, s.event(typ, req, ""))
	if req.Kind == Eligibility {
		if r := pol.Rule(RuleEnablementEndUser); !hasEnabled(r, EnableMFA) {
			*evs = append(*evs, s.raiseTx(ctx, tx, AlertNoMFA, req.Target, Incident{PrincipalID: req.PrincipalID, At: now})...)
		}
	}
	return put(ctx, tx, objRequest, req.ID, req)
}

func scheduleID(req *Request) string {
	if req.Target.Kind == KindGroup {
		return req.Target.GroupID + "_" + req.Target.AccessID + "_" + req.ID
	}
	return req.ID
}

// eligibility finds the eligibility in force at now that lets principal
// (or one of its groups) activate t.
func (s *Service) eligibility(ctx context.Context, tx store.Tx, t Target, principalID, linked string, now time.Time) (*Schedule, error) {
	scheds, err := list[Schedule](ctx, tx, objSchedule)
	if err != nil {
		return nil, err
	}
	var groups []string
	if s.cfg.Groups != nil {
		if groups, err = s.cfg.Groups(ctx, principalID); err != nil {
			return nil, err
		}
	}
	for _, sc := range scheds {
		if sc.Kind != Eligibility || !sc.Target.Same(t) || !sc.InForce(now) {
			continue
		}
		if sc.PrincipalID != principalID && !slices.Contains(groups, sc.PrincipalID) {
			continue
		}
		if linked != "" && !strings.EqualFold(linked, sc.ID) && !strings.HasSuffix(strings.ToLower(linked), "/"+strings.ToLower(sc.ID)) {
			continue
		}
		return sc, nil
	}
	return nil, nil
}

func (s *Service) activate(ctx context.Context, tx store.Tx, prov Provisioner, pol *Policy, c Caller, req *Request, start, end, now time.Time, validate bool, evs *[]events.Event) error {
	var f failing
	el, err := s.eligibility(ctx, tx, req.Target, req.PrincipalID, req.LinkedEligibilityID, now)
	if err != nil {
		return err
	}
	if el == nil {
		f.add("EligibilityRule")
	} else {
		req.LinkedEligibilityID = el.ID
	}
	checkExpiration(pol.Rule(RuleExpirationEndUser), req.Schedule, start, &end, &f)
	// An activation ends with its eligibility at the latest.
	if el != nil {
		if end = clampEnd(end, el); !end.IsZero() && !end.After(start) {
			f.add("EligibilityRule")
		}
	}
	checkEnablement(pol.Rule(RuleEnablementEndUser), c, req, &f)
	appr := pol.Rule(RuleApprovalEndUser)
	needApproval := appr != nil && appr.Setting != nil && appr.Setting.IsApprovalRequired
	if needApproval && appr.Setting.IsRequestorJustificationRequired && missing(req.Justification) {
		f.add("JustificationRule")
	}
	if err := f.err(); err != nil {
		return err
	}
	if ac := pol.Rule(RuleAuthContextEndUser); ac != nil && ac.IsEnabled && !slices.Contains(c.ACRS, ac.ClaimValue) {
		return ErrAcrsValidation.With(`The authentication context is not satisfied: &claims=%s`,
			`{"access_token":{"acrs":{"essential":true,"value":"`+ac.ClaimValue+`"}}}`)
	}
	reqs, err := list[Request](ctx, tx, objRequest)
	if err != nil {
		return err
	}
	scheds, err := list[Schedule](ctx, tx, objSchedule)
	if err != nil {
		return err
	}
	for _, sc := range scheds {
		if sc.Kind == Assignment && sc.Target.Same(req.Target) && sc.PrincipalID == req.PrincipalID && sc.Status == StatusProvisioned && (sc.End.IsZero() || now.Before(sc.End)) {
			return ErrAssignmentExists
		}
	}
	for _, r := range reqs {
		if r.Kind == Assignment && r.Action == SelfActivate && r.Status == StatusPendingApproval && r.Target.Same(req.Target) && r.PrincipalID == req.PrincipalID {
			return ErrAssignmentExists.With("A request for this access waits for approval already.")
		}
	}
	// The duration counts from when access begins: keep the validated
	// span (and nothing else the caller sent), not the end.
	req.Schedule.Start = start
	req.Schedule.Duration, req.Schedule.End = "", time.Time{}
	if !end.IsZero() {
		req.Schedule.Duration = FormatDuration(end.Sub(start))
	}
	if validate {
		req.Status = StatusGranted
		if needApproval {
			req.Status = "PendingEvaluation"
		}
		return nil
	}
	if needApproval {
		req.Status = StatusPendingApproval
		req.ApprovalID = req.ID
		a := &Approval{ID: req.ID, RequestKind: req.Kind, Target: req.Target, PrincipalID: req.PrincipalID, RequestorID: req.RequestorID, Created: now}
		for i, st := range appr.Setting.ApprovalStages {
			status := StageNotStarted
			if i == 0 {
				status = StageInProgress
			}
			a.Stages = append(a.Stages, Stage{ID: uuid.NewString(), DisplayName: "Stage " + string(rune('1'+i)), Approvers: st.PrimaryApprovers,
				IsApproverJustificationRequired: st.IsApproverJustificationRequired, Status: status, ReviewResult: NotReviewed})
		}
		if err := put(ctx, tx, objApproval, a.ID, a); err != nil {
			return err
		}
		*evs = append(*evs, s.event(EventApprovalRequested, req, ""))
		return put(ctx, tx, objRequest, req.ID, req)
	}
	return s.provision(ctx, tx, prov, req, start, end, now, evs)
}

// clampEnd ends an activation with its eligibility at the latest.
func clampEnd(end time.Time, el *Schedule) time.Time {
	if !el.End.IsZero() && (end.IsZero() || end.After(el.End)) {
		return el.End
	}
	return end
}

// provision makes an activation real from start until end.
func (s *Service) provision(ctx context.Context, tx store.Tx, prov Provisioner, req *Request, start, end, now time.Time, evs *[]events.Event) error {
	req.Status = StatusProvisioned
	req.Completed = now
	req.TargetScheduleID = scheduleID(req)
	sc := &Schedule{ID: req.TargetScheduleID, Kind: Assignment, Target: req.Target, PrincipalID: req.PrincipalID, PrincipalKind: req.PrincipalKind,
		AssignmentType: Activated, Start: start, End: end, Status: StatusProvisioned, RequestID: req.ID, LinkedEligibilityID: req.LinkedEligibilityID,
		Created: now, Updated: now}
	if err := prov.Grant(ctx, tx, req.Target, req.PrincipalID, start, end, req.ID); err != nil {
		return err
	}
	if err := put(ctx, tx, objSchedule, sc.ID, sc); err != nil {
		return err
	}
	*evs = append(*evs, s.event(EventActivated, req, ""))
	return put(ctx, tx, objRequest, req.ID, req)
}

func (s *Service) remove(ctx context.Context, tx store.Tx, prov Provisioner, req *Request, now time.Time, validate bool, evs *[]events.Event) error {
	scheds, err := list[Schedule](ctx, tx, objSchedule)
	if err != nil {
		return err
	}
	var found []*Schedule
	for _, sc := range scheds {
		if sc.Kind != req.Kind || !sc.Target.Same(req.Target) || sc.PrincipalID != req.PrincipalID || sc.Status != StatusProvisioned ||
			(!sc.End.IsZero() && !now.Before(sc.End)) {
			continue
		}
		if req.Action == SelfDeactivate && sc.AssignmentType != Activated {
			continue
		}
		found = append(found, sc)
	}
	if len(found) == 0 {
		return ErrAssignmentDoesNotExist
	}
	req.Status, req.Completed, req.TargetScheduleID = StatusRevoked, now, found[0].ID
	if validate {
		return nil
	}
	for _, sc := range found {
		sc.Status, sc.Updated = StatusRevoked, now
		if sc.Start.After(now) {
			sc.Start = now
		}
		sc.End = now
		if sc.Kind == Assignment {
			if err := prov.Revoke(ctx, tx, sc.Target, sc.PrincipalID, sc.RequestID); err != nil {
				return err
			}
		}
		if err := put(ctx, tx, objSchedule, sc.ID, sc); err != nil {
			return err
		}
	}
	*evs = append(*evs, s.event(EventDeactivated, req, ""))
	return put(ctx, tx, objRequest, req.ID, req)
}

// Request returns a request by id (of any kind; kind "" takes either).
func (s *Service) Request(ctx context.Context, kind, id string) (*Request, error) {
	var r *Request
	err := s.view(ctx, func(tx store.Tx) (err error) {
		r, err = get[Request](ctx, tx, objRequest, id, ErrRequestNotFound)
		return err
	})
	if err == nil && kind != "" && r.Kind != kind {
		return nil, ErrRequestNotFound
	}
	return r, err
}

// Requests lists the requests of kind that keep (nil: all) accepts,
// oldest first.
func (s *Service) Requests(ctx context.Context, kind string, keep func(*Request) bool) ([]*Request, error) {
	var all []*Request
	if err := s.view(ctx, func(tx store.Tx) (err error) { all, err = list[Request](ctx, tx, objRequest); return err }); err != nil {
		return nil, err
	}
	out := []*Request{}
	for _, r := range all {
		if r.Kind == kind && (keep == nil || keep(r)) {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Schedules lists the schedules of kind that keep accepts (nil: all):
// current, future and ended ones, oldest first.
func (s *Service) Schedules(ctx context.Context, kind string, keep func(*Schedule) bool) ([]*Schedule, error) {
	var all []*Schedule
	if err := s.view(ctx, func(tx store.Tx) (err error) { all, err = list[Schedule](ctx, tx, objSchedule); return err }); err != nil {
		return nil, err
	}
	out := []*Schedule{}
	for _, sc := range all {
		if sc.Kind == kind && (keep == nil || keep(sc)) {
			out = append(out, sc)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Instances lists the schedules of kind in force now that keep accepts.
func (s *Service) Instances(ctx context.Context, kind string, keep func(*Schedule) bool) ([]*Schedule, error) {
	now := s.now()
	return s.Schedules(ctx, kind, func(sc *Schedule) bool { return sc.InForce(now) && (keep == nil || keep(sc)) })
}

// Schedule returns a schedule by id.
func (s *Service) Schedule(ctx context.Context, id string) (*Schedule, error) {
	var sc *Schedule
	err := s.view(ctx, func(tx store.Tx) (err error) {
		sc, err = get[Schedule](ctx, tx, objSchedule, id, ErrScheduleNotFound)
		return err
	})
	return sc, err
}

// Cancel cancels a request that waits for approval; only its requestor
// or an administrator (c.Admin) may.
func (s *Service) Cancel(ctx context.Context, c Caller, kind, id string) (*Request, error) {
	var req *Request
	var evs []events.Event
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) (err error) {
		evs = nil
		if req, err = get[Request](ctx, tx, objRequest, id, ErrRequestNotFound); err != nil {
			return err
		}
		if kind != "" && req.Kind != kind {
			return ErrRequestNotFound
		}
		if !c.Admin && !strings.EqualFold(c.ObjectID, req.RequestorID) {
			return ErrNotAllowed.With("Only the requestor or an administrator may cancel a request.")
		}
		if req.Status != StatusPendingApproval {
			return ErrNotCancelable
		}
		now := s.now()
		req.Status, req.Completed = StatusCanceled, now
		if a, err := get[Approval](ctx, tx, objApproval, req.ID, ErrApprovalNotFound); err == nil {
			for i := range a.Stages {
				if a.Stages[i].Status != StageCompleted {
					a.Stages[i].Status = StageCompleted
				}
			}
			if err := put(ctx, tx, objApproval, a.ID, a); err != nil {
				return err
			}
		}
		evs = append(evs, s.event(EventApprovalDecided, req, "Canceled"))
		return put(ctx, tx, objRequest, req.ID, req)
	})
	if err != nil {
		return nil, err
	}
	s.publish(evs)
	return req, nil
}

// ---- approvals ----

// Approval returns an approval; only its requestor, a principal it is
// for, an approver or an administrator may read it (others: not found).
func (s *Service) Approval(ctx context.Context, c Caller, id string) (*Approval, error) {
	var a *Approval
	err := s.view(ctx, func(tx store.Tx) (err error) {
		a, err = get[Approval](ctx, tx, objApproval, id, ErrApprovalNotFound)
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Admin || strings.EqualFold(c.ObjectID, a.RequestorID) || strings.EqualFold(c.ObjectID, a.PrincipalID) {
		return a, nil
	}
	for _, st := range a.Stages {
		if ok, err := s.IsApprover(ctx, st, c.ObjectID); err != nil || ok {
			return a, err
		}
	}
	return nil, ErrApprovalNotFound
}

// IsApprover reports whether principal may decide stage st.
func (s *Service) IsApprover(ctx context.Context, st Stage, principalID string) (bool, error) {
	var groups []string
	for _, ap := range st.Approvers {
		if ap.UserType == "User" && strings.EqualFold(ap.ID, principalID) {
			return true, nil
		}
		if ap.UserType == "Group" {
			if groups == nil && s.cfg.Groups != nil {
				gs, err := s.cfg.Groups(ctx, principalID)
				if err != nil {
					return false, err
				}
				groups = append([]string{}, gs...)
			}
			for _, g := range groups {
				if strings.EqualFold(g, ap.ID) {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// CanApprove reports whether principal may decide the stage of request
// id that is in progress now.
func (s *Service) CanApprove(ctx context.Context, principalID string, req *Request) (bool, error) {
	if req.ApprovalID == "" || strings.EqualFold(principalID, req.RequestorID) {
		return false, nil
	}
	var a *Approval
	err := s.view(ctx, func(tx store.Tx) (err error) {
		a, err = get[Approval](ctx, tx, objApproval, req.ApprovalID, ErrApprovalNotFound)
		return err
	})
	if err != nil {
		return false, err
	}
	for i, st := range a.Stages {
		if st.Status == StageInProgress {
			if reviewedOther(a, i, principalID) {
				return false, nil
			}
			return s.IsApprover(ctx, st, principalID)
		}
	}
	return false, nil
}

// Decide records an approver's review of a stage: Approve provisions the
// access (its time counts from now), Deny ends the request. The requestor
// and non-approvers are refused (ErrNotAllowed); a decided stage is
// ErrAlreadyDecided.
func (s *Service) Decide(ctx context.Context, c Caller, approvalID, stageID, result, justification string) error {
	switch {
	case strings.EqualFold(result, "Approve"), strings.EqualFold(result, "Approved"):
		result = Approve
	case strings.EqualFold(result, "Deny"), strings.EqualFold(result, "Denied"):
		result = Deny
	default:
		return ErrBadRequest.With("reviewResult %q is not Approve or Deny.", result)
	}
	var evs []events.Event
	var activated *Request
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		evs, activated = nil, nil
		a, err := get[Approval](ctx, tx, objApproval, approvalID, ErrApprovalNotFound)
		if err != nil {
			return err
		}
		idx := -1
		for i := range a.Stages {
			if strings.EqualFold(a.Stages[i].ID, stageID) {
				idx = i
			}
		}
		if idx < 0 {
			return ErrApprovalNotFound.With("The approval %s has no stage %s.", approvalID, stageID)
		}
		st := &a.Stages[idx]
		if strings.EqualFold(c.ObjectID, a.RequestorID) {
			return ErrNotAllowed.With("The requestor cannot review his own request.")
		}
		ok, err := s.IsApprover(ctx, *st, c.ObjectID)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotAllowed.With("The caller is not an approver of this stage.")
		}
		if reviewedOther(a, idx, c.ObjectID) {
			return ErrNotAllowed.With("The caller reviewed another stage of this approval: each stage needs a different approver.")
		}
		if st.ReviewResult != NotReviewed || st.Status != StageInProgress {
			return ErrAlreadyDecided
		}
		if st.IsApproverJustificationRequired && missing(justification) {
			return ErrBadRequest.With("A justification is required for this review.")
		}
		req, err := get[Request](ctx, tx, objRequest, a.ID, ErrRequestNotFound)
		if err != nil {
			return err
		}
		if req.Status != StatusPendingApproval {
			return ErrAlreadyDecided.With("The request is %s: it can no longer be reviewed.", req.Status)
		}
		now := s.now().UTC().Truncate(time.Second)
		st.Status, st.ReviewResult, st.ReviewedBy, st.Reviewed, st.Justification = StageCompleted, result, strings.ToLower(c.ObjectID), now, justification
		last := idx == len(a.Stages)-1
		if result == Approve && !last {
			a.Stages[idx+1].Status = StageInProgress
		}
		if err := put(ctx, tx, objApproval, a.ID, a); err != nil {
			return err
		}
		if result == Deny {
			req.Status, req.Completed = StatusDenied, now
			evs = append(evs, s.event(EventApprovalDecided, req, Deny))
			return put(ctx, tx, objRequest, req.ID, req)
		}
		evs = append(evs, s.event(EventApprovalDecided, req, Approve))
		if !last {
			return put(ctx, tx, objRequest, req.ID, req)
		}
		// Access begins now (or at the requested start, if later) and
		// lasts the validated span from then, within the policy and the
		// eligibility in force now; otherwise the request fails.
		start := req.Schedule.Start
		if start.Before(now) {
			start = now
		}
		end, ok, err := s.approvedEnd(ctx, tx, req, start, now)
		if err != nil {
			return err
		}
		if !ok {
			req.Status, req.Completed = StatusFailed, now
			return put(ctx, tx, objRequest, req.ID, req)
		}
		req.Schedule.Start = start
		prov, err := s.prov(req.Target.Kind)
		if err != nil {
			return err
		}
		activated = req
		return s.provision(ctx, tx, prov, req, start, end, now, &evs)
	})
	if err != nil {
		return err
	}
	s.publish(evs)
	if activated != nil {
		s.noteActivation(ctx, activated)
	}
	return nil
}

// reviewedOther reports whether principal reviewed a stage of a other
// than idx: one approver may not approve two stages.
func reviewedOther(a *Approval, idx int, principalID string) bool {
	for j, st := range a.Stages {
		if j != idx && st.ReviewedBy != "" && strings.EqualFold(st.ReviewedBy, principalID) {
			return true
		}
	}
	return false
}

// approvedEnd is the end of an approved activation that begins at start:
// the span validated at submission, checked again against the policy now
// and ended with the eligibility, which must still be in force. ok is
// false when the activation may no longer be granted.
func (s *Service) approvedEnd(ctx context.Context, tx store.Tx, req *Request, start, now time.Time) (end time.Time, ok bool, err error) {
	el, err := s.eligibility(ctx, tx, req.Target, req.PrincipalID, req.LinkedEligibilityID, now)
	if err != nil || el == nil {
		return end, false, err
	}
	pol, err := s.policy(ctx, tx, req.Target)
	if err != nil {
		return end, false, err
	}
	switch {
	case req.Schedule.Duration != "":
		d, err := ParseDuration(req.Schedule.Duration)
		if err != nil || d < time.Minute {
			return end, false, nil
		}
		end = start.Add(d)
	case !req.Schedule.End.IsZero():
		end = start.Add(req.Schedule.End.Sub(req.Schedule.Start))
	}
	var f failing
	checkExpiration(pol.Rule(RuleExpirationEndUser), req.Schedule, start, &end, &f)
	if len(f) > 0 {
		return end, false, nil
	}
	if end = clampEnd(end, el); !end.IsZero() && !end.After(start) {
		return end, false, nil
	}
	return end, true, nil
}
