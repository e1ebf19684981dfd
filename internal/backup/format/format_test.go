package format

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// fill sets every field of the struct v points to, recursively, to a
// value that is not the zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Map:
			f.Set(reflect.MakeMap(f.Type()))
			f.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
		case reflect.Slice:
			if f.Type() == reflect.TypeFor[json.RawMessage]() {
				f.SetBytes([]byte(`{"k":"v"}`))
				continue
			}
			s := reflect.MakeSlice(f.Type(), 1, 1)
			switch e := s.Index(0); e.Kind() {
			case reflect.String:
				e.SetString("x")
			case reflect.Uint8:
				e.SetUint(7)
			case reflect.Struct:
				fill(t, e)
			default:
				t.Fatalf("%s.%s: no filler for slices of %s", v.Type(), v.Type().Field(i).Name, e.Kind())
			}
			f.Set(s)
		case reflect.Struct:
			if f.Type() == reflect.TypeFor[time.Time]() {
				f.Set(reflect.ValueOf(time.Date(2024, 5, 1, 12, i, 0, 0, time.UTC)))
			} else {
				fill(t, f)
			}
		default:
			t.Fatalf("%s.%s: no filler for %s", v.Type(), v.Type().Field(i).Name, f.Kind())
		}
	}
}

func filled[T any](t *testing.T) *T {
	var v T
	fill(t, reflect.ValueOf(&v).Elem())
	return &v
}

// TestStoreRoundTrip fails when a store struct gains a field that its
// record does not carry: the backup would silently drop it. (Renaming a
// store field fails to compile here instead, as the conversions name
// every field.)
func TestStoreRoundTrip(t *testing.T) {
	k := filled[store.Key](t)
	if r := FromKey(k); !reflect.DeepEqual(r.Store(), *k) {
		t.Errorf("store.Key does not round-trip: %+v", r.Store())
	}
	v := filled[store.KeyVersion](t)
	if r := FromKeyVersion(v); !reflect.DeepEqual(r.Store(), *v) {
		t.Errorf("store.KeyVersion does not round-trip: %+v", r.Store())
	}
	d := filled[store.RoleDefinition](t)
	if r := FromRoleDefinition(d); !reflect.DeepEqual(r.Store(), d) {
		t.Errorf("store.RoleDefinition does not round-trip: %+v", r.Store())
	}
	a := filled[store.RoleAssignment](t)
	if r := FromRoleAssignment(a); !reflect.DeepEqual(r.Store(), a) {
		t.Errorf("store.RoleAssignment does not round-trip: %+v", r.Store())
	}
	// nil and empty stay apart: format 1 writes null for nil.
	if r := FromKeyVersion(&store.KeyVersion{Ops: []string{}}); r.Ops == nil || r.Tags != nil || r.Store().Ops == nil {
		t.Error("nil and empty slices were conflated")
	}
}

// TestJSONRoundTrip encodes filled records and decodes them again.
func TestJSONRoundTrip(t *testing.T) {
	for name, in := range map[string]any{
		"full": filled[Full](t), "keyBackup": filled[KeyBackup](t),
	} {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out := reflect.New(reflect.TypeOf(in).Elem())
		if err := json.Unmarshal(b, out.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out.Interface(), in) {
			t.Errorf("%s does not round-trip through JSON:\n%s", name, b)
		}
	}
}

// TestNamesFrozen pins the JSON names of format 1. Changing one makes
// every existing backup unreadable: add a field, or write a new Version.
func TestNamesFrozen(t *testing.T) {
	for name, c := range map[string]struct {
		v    any
		want []string
	}{
		"Full":           {Full{}, []string{"format", "domainId", "keys", "versions", "roles", "assignments"}},
		"KeyBackup":      {KeyBackup{}, []string{"format", "domainId", "key", "versions"}},
		"Key":            {Key{}, []string{"HSM", "Name", "Created", "Deleted", "ScheduledPurge", "RotationPolicy"}},
		"KeyVersion":     {KeyVersion{ReleasePolicy: []byte("{}")}, []string{"HSM", "Name", "Version", "Seq", "Kty", "Ops", "Enabled", "NotBefore", "Expires", "Created", "Updated", "Tags", "Exportable", "ReleasePolicy", "Public", "Sealed"}},
		"RoleDefinition": {RoleDefinition{}, []string{"HSM", "ID", "Name", "Description", "Permissions", "AssignableScopes", "Created", "Updated"}},
		"Permission":     {Permission{}, []string{"actions", "notActions", "dataActions", "notDataActions"}},
		"RoleAssignment": {RoleAssignment{}, []string{"HSM", "ID", "Scope", "RoleDefinitionID", "PrincipalID", "Created", "Start", "End", "Source", "CreatedBy"}},
	} {
		b, _ := json.Marshal(c.v)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var got []string
		for k := range m {
			got = append(got, k)
		}
		want := slices.Clone(c.want)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s writes %v, format 1 is %v", name, got, want)
		}
	}
}
