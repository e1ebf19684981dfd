// Package releasepolicy reads and evaluates secure key release policies in
// Azure's grammar: a policy releases a key to a workload whose attestation
// token, issued by one of the policy's authorities, satisfies that
// authority's claim conditions.
//
//	{"version": "1.0.0", "anyOf": [
//	  {"authority": "https://sharedeus.eus.attest.azure.net",
//	   "allOf": [{"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"}]}]}
//
// A condition is a claim test (equals, notEquals, less, lessOrEquals,
// greater, greaterOrEquals, exists) or a nested allOf/anyOf group. The older
// form {"claim": c, "condition": "equals", "value": v} of version 1.0 is read
// too; a policy is always written back in version 1.0.0's form, as Azure
// does.
package releasepolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	"github.com/keyward/keyward/internal/fault"
)

// Bounds on a policy, so that evaluating one costs little.
const (
	MaxSize        = 16 << 10 // bytes of policy JSON
	maxDepth       = 8
	maxConditions  = 256
	maxAuthorities = 16
)

// ErrInvalid is a policy that does not follow the grammar.
var ErrInvalid = fault.New(fault.Invalid, "BadParameter", "The key release policy is not valid.")

// Policy is a parsed release policy.
type Policy struct {
	Authorities []Authority
}

// Authority is one authority with its conditions, all or any of which
// must hold.
type Authority struct {
	URL   string
	Group Group
}

// Group is an allOf or anyOf of conditions.
type Group struct {
	All        bool // allOf; else anyOf
	Conditions []Condition
}

// Condition is a claim test or a nested group.
type Condition struct {
	Claim    string
	Operator string // equals, notEquals, less, lessOrEquals, greater, greaterOrEquals, exists
	Value    any    // string, json.Number or bool
	Group    *Group // set for a nested allOf/anyOf
}

var operators = []string{"equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists"}

// Parse reads a policy's JSON.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, ErrInvalid.With("The key release policy is longer than %d bytes.", MaxSize)
	}
	var top map[string]json.RawMessage
	if err := decode(data, &top); err != nil {
		return nil, ErrInvalid.With("The key release policy is not a JSON object.")
	}
	fields, err := folded(top)
	if err != nil {
		return nil, err
	}
	var version string
	if err := decode(fields["version"], &version); err != nil || (version != "1.0.0" && version != "1.0") {
		return nil, ErrInvalid.With("Key Release Policy: the 'version' property must be \"1.0.0\".")
	}
	var raw []json.RawMessage
	if err := decode(fields["anyof"], &raw); err != nil || len(raw) == 0 || len(raw) > maxAuthorities {
		return nil, ErrInvalid.With("Key Release Policy: 'anyOf' must list 1 to %d authorities.", maxAuthorities)
	}
	p := &Policy{}
	budget := maxConditions
	for _, r := range raw {
		a, err := parseAuthority(r, &budget)
		if err != nil {
			return nil, err
		}
		p.Authorities = append(p.Authorities, a)
	}
	return p, nil
}

func parseAuthority(data json.RawMessage, budget *int) (Authority, error) {
	var obj map[string]json.RawMessage
	if err := decode(data, &obj); err != nil {
		return Authority{}, ErrInvalid.With("Key Release Policy: each entry of 'anyOf' is an object with an authority.")
	}
	fields, err := folded(obj)
	if err != nil {
		return Authority{}, err
	}
	var a Authority
	if err := decode(fields["authority"], &a.URL); err != nil || !isHTTPS(a.URL) {
		return Authority{}, ErrInvalid.With("Key Release Policy: each authority is an https URL.")
	}
	g, err := parseGroup(fields, budget, 1)
	if err != nil {
		return Authority{}, err
	}
	if g == nil {
		return Authority{}, ErrInvalid.With("Key Release Policy: the authority %s needs allOf or anyOf conditions.", a.URL)
	}
	a.Group = *g
	return a, nil
}

// parseGroup reads the allOf or anyOf of an object's fields; nil if it
// has neither.
func parseGroup(fields map[string]json.RawMessage, budget *int, depth int) (*Group, error) {
	all, hasAll := fields["allof"]
	anyOf, hasAny := fields["anyof"]
	if hasAll && hasAny {
		return nil, ErrInvalid.With("Key Release Policy: a condition group has allOf or anyOf, not both.")
	}
	if !hasAll && !hasAny {
		return nil, nil
	}
	if depth > maxDepth {
		return nil, ErrInvalid.With("Key Release Policy: conditions nest at most %d deep.", maxDepth)
	}
	list := anyOf
	if hasAll {
		list = all
	}
	var raw []json.RawMessage
	if err := decode(list, &raw); err != nil || len(raw) == 0 {
		return nil, ErrInvalid.With("Key Release Policy: allOf and anyOf list at least one condition.")
	}
	g := &Group{All: hasAll}
	for _, r := range raw {
		if *budget--; *budget < 0 {
			return nil, ErrInvalid.With("Key Release Policy: at most %d conditions.", maxConditions)
		}
		c, err := parseCondition(r, budget, depth)
		if err != nil {
			return nil, err
		}
		g.Conditions = append(g.Conditions, c)
	}
	return g, nil
}

func parseCondition(data json.RawMessage, budget *int, depth int) (Condition, error) {
	var obj map[string]json.RawMessage
	if err := decode(data, &obj); err != nil {
		return Condition{}, ErrInvalid.With("Key Release Policy: a condition is a JSON object.")
	}
	fields, err := folded(obj)
	if err != nil {
		return Condition{}, err
	}
	g, err := parseGroup(fields, budget, depth+1)
	if err != nil {
		return Condition{}, err
	}
	if g != nil {
		if len(fields) != 1 {
			return Condition{}, ErrInvalid.With("Key Release Policy: a condition group has nothing beside its allOf or anyOf.")
		}
		return Condition{Group: g}, nil
	}
	var c Condition
	if err := decode(fields["claim"], &c.Claim); err != nil || c.Claim == "" {
		return Condition{}, ErrInvalid.With("Key Release Policy: a condition names a claim, or is an allOf or anyOf.")
	}
	delete(fields, "claim")
	if cond, ok := fields["condition"]; ok { // version 1.0: {"claim", "condition", "value"}
		var op string
		if err := decode(cond, &op); err != nil || len(fields) != 2 {
			return Condition{}, ErrInvalid.With("Key Release Policy: 'condition' names an operator, with its 'value'.")
		}
		fields = map[string]json.RawMessage{strings.ToLower(op): fields["value"]}
	}
	if len(fields) != 1 {
		return Condition{}, ErrInvalid.With("Key Release Policy: the condition on %s has one operator: %s.", c.Claim, strings.Join(operators, ", "))
	}
	for name, raw := range fields {
		for _, op := range operators {
			if strings.EqualFold(op, name) {
				c.Operator = op
			}
		}
		if c.Operator == "" {
			return Condition{}, ErrInvalid.With("Key Release Policy: unknown operator %q on %s; use %s.", name, c.Claim, strings.Join(operators, ", "))
		}
		v, err := value(raw)
		if err != nil {
			return Condition{}, ErrInvalid.With("Key Release Policy: the value for %s is a string, a number or true or false.", c.Claim)
		}
		c.Value = v
	}
	switch c.Operator {
	case "exists":
		if _, ok := c.Value.(bool); !ok {
			return Condition{}, ErrInvalid.With("Key Release Policy: exists takes true or false.")
		}
	case "less", "lessOrEquals", "greater", "greaterOrEquals":
		if _, ok := c.Value.(json.Number); !ok {
			return Condition{}, ErrInvalid.With("Key Release Policy: %s compares with a number.", c.Operator)
		}
	}
	return c, nil
}

// value decodes a policy or claim value: a string, a number (kept exact)
// or a boolean.
func value(raw json.RawMessage) (any, error) {
	var v any
	if err := decode(raw, &v); err != nil {
		return nil, err
	}
	switch v.(type) {
	case string, json.Number, bool:
		return v, nil
	}
	return nil, fmt.Errorf("not a scalar")
}

func decode(data []byte, v any) error {
	if data == nil {
		return fmt.Errorf("missing")
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// folded keys an object's fields by their lowercase names: Azure's
// grammar writes anyof, its services write anyOf. Two fields of one name
// in two spellings are refused: which one won would be chance.
func folded(m map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		if _, dup := out[lk]; dup {
			return nil, ErrInvalid.With("Key Release Policy: the property %.64q is given twice, in two spellings.", lk)
		}
		out[lk] = v
	}
	return out, nil
}

func isHTTPS(s string) bool { return CanonicalAuthority(s) != "" }

// CanonicalAuthority is an authority's one spelling, under which its
// keys are fetched and cached: https, the host in lower case, the path
// without a trailing slash. It is "" for anything else, user info, a
// query or a fragment included, so that a token cannot name an authority
// in endless spellings.
func CanonicalAuthority(s string) string {
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Opaque != "" {
		return ""
	}
	return "https://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.EscapedPath(), "/")
}

// SameAuthority compares an authority with a token's issuer: both plain
// https URLs, with the same canonical spelling (scheme and host without
// regard to case, one trailing slash either way).
func SameAuthority(a, b string) bool {
	ca := CanonicalAuthority(a)
	return ca != "" && ca == CanonicalAuthority(b)
}

// Marshal writes p in version 1.0.0's form, with Azure's field order.
func (p *Policy) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":"1.0.0","anyOf":[`)
	for i, a := range p.Authorities {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"authority":`)
		writeJSON(&b, a.URL)
		b.WriteByte(',')
		a.Group.write(&b)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func (g *Group) write(b *bytes.Buffer) {
	if g.All {
		b.WriteString(`"allOf":[`)
	} else {
		b.WriteString(`"anyOf":[`)
	}
	for i, c := range g.Conditions {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		if c.Group != nil {
			c.Group.write(b)
		} else {
			b.WriteString(`"claim":`)
			writeJSON(b, c.Claim)
			b.WriteString(`,"` + c.Operator + `":`)
			writeJSON(b, c.Value)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
}

func writeJSON(b *bytes.Buffer, v any) {
	out, _ := json.Marshal(v) // strings, json.Number and bools always encode
	b.Write(out)
}

// Evaluate tells whether claims, from a token that issuer signed, satisfy
// the policy: some authority that is the issuer has its conditions hold.
// When they do not, the reason names the first condition that failed.
func (p *Policy) Evaluate(issuer string, claims map[string]any) (ok bool, reason string) {
	reason = fmt.Sprintf("the policy names no authority %s", issuer)
	for _, a := range p.Authorities {
		if !SameAuthority(a.URL, issuer) {
			continue
		}
		if ok, why := a.Group.holds(claims); ok {
			return true, ""
		} else {
			reason = why
		}
	}
	return false, reason
}

func (g *Group) holds(claims map[string]any) (bool, string) {
	var why string
	for _, c := range g.Conditions {
		ok, reason := c.holds(claims)
		if g.All && !ok {
			return false, reason
		}
		if !g.All && ok {
			return true, ""
		}
		why = reason
	}
	if g.All {
		return true, ""
	}
	return false, "none of anyOf holds (the last: " + why + ")"
}

func (c *Condition) holds(claims map[string]any) (bool, string) {
	if c.Group != nil {
		return c.Group.holds(claims)
	}
	got, present := lookup(claims, c.Claim)
	fail := fmt.Sprintf("claim %s is not %s %v", c.Claim, c.Operator, c.Value)
	if c.Operator == "exists" {
		if present == c.Value.(bool) {
			return true, ""
		}
		return false, fail
	}
	if !present {
		return false, fmt.Sprintf("claim %s is missing", c.Claim)
	}
	var ok bool
	switch c.Operator {
	case "equals":
		ok = equal(got, c.Value)
	case "notEquals":
		ok = !equal(got, c.Value)
	default:
		cmp, comparable := compare(got, c.Value)
		ok = comparable && ((c.Operator == "less" && cmp < 0) || (c.Operator == "lessOrEquals" && cmp <= 0) ||
			(c.Operator == "greater" && cmp > 0) || (c.Operator == "greaterOrEquals" && cmp >= 0))
	}
	if ok {
		return true, ""
	}
	return false, fail
}

// lookup finds a claim by its name, or by its dotted path through nested
// objects (x-ms-isolation-tee.x-ms-attestation-type).
func lookup(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func equal(got, want any) bool {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		return ok && g == w
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case json.Number:
		cmp, ok := compare(got, w)
		return ok && cmp == 0
	}
	return false
}

// modest refuses numbers whose exact value would be huge to hold
// (1e999999999): claims and policies carry versions and counters.
func modest(n json.Number) bool {
	if len(n) > 64 {
		return false
	}
	if i := strings.IndexAny(string(n), "eE"); i >= 0 {
		exp, err := strconv.Atoi(string(n[i+1:]))
		return err == nil && exp >= -400 && exp <= 400
	}
	return true
}

// compare orders two numbers exactly (big.Rat), whatever their notation.
func compare(got, want any) (int, bool) {
	g, ok1 := got.(json.Number)
	w, ok2 := want.(json.Number)
	if !ok1 || !ok2 {
		return 0, false
	}
	if !modest(g) || !modest(w) {
		return 0, false
	}
	gr, ok1 := new(big.Rat).SetString(string(g))
	wr, ok2 := new(big.Rat).SetString(string(w))
	if !ok1 || !ok2 {
		return 0, false
	}
	return gr.Cmp(wr), true
}
