package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	jmespath "github.com/keyward/keyward/internal/third_party/jmespath"
)

// outputFlags are -o and --query, which every client command takes.
type outputFlags struct {
	format string
	query  string
	// columns, when set, are the table columns (keys of each row), in
	// order, as az's table transformers choose them for a command.
	columns []string
}

// tableColumns sets the columns of cmd's table output: keys of each row,
// each headed by its name capitalised, or by the name after a colon
// ("principalName:Principal"), as az's table transformers name them.
func tableColumns(cmd *cobra.Command, cols ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations["table"] = strings.Join(cols, ",")
	return cmd
}

func (o *outputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "json", "output format: json, jsonc, yaml, yamlc, tsv, table, none")
	cmd.Flags().StringVar(&o.query, "query", "", "JMESPath query string, applied to the output")
}

// print renders v (any JSON-encodable value) as az would (knack's
// output.py: format_json, format_tsv, format_table).
func (o *outputFlags) print(w io.Writer, v any) error {
	if v == nil {
		return nil
	}
	generic, err := toGeneric(v)
	if err != nil {
		return err
	}
	r := renderer{}
	if o.query != "" {
		if generic, err = jmespath.Search(o.query, generic); err != nil {
			return usagef("invalid --query %q: %v", o.query, err)
		}
		r.query = true
		if keys, err := jmespath.HashKeys(o.query); err == nil && len(keys) > 0 {
			r.order = map[string]int{}
			for i, k := range keys {
				r.order[k] = i
			}
		}
	}
	if generic == nil {
		return nil // as az: a query that yields null prints nothing
	}
	switch o.format {
	case "json", "jsonc", "":
		// As az: keys sorted (sort_keys=True), URLs and SAS tokens with
		// their & and <, unescaped.
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(generic)
	case "yaml", "yamlc":
		// As knack's format_yaml (PyYAML's safe_dump): block style, keys
		// sorted, list items not indented under their key.
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		enc.CompactSeqIndent()
		if err := enc.Encode(generic); err != nil {
			return err
		}
		return enc.Close()
	case "tsv":
		return r.writeTSV(w, generic)
	case "table":
		if r.query {
			return r.writeTable(w, generic, nil) // a query chooses its own shape
		}
		return r.writeTable(w, generic, o.columns)
	case "none":
		return nil
	}
	return usagef("unknown output format %q: use json, jsonc, yaml, yamlc, tsv, table or none", o.format)
}

func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding output: %w", err)
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("encoding output: %w", err)
	}
	return g, nil
}

// renderer writes tsv and tables as knack does. Objects print in key
// order: sorted, except that the keys a --query's multi-select hashes name
// keep the order written (az evaluates queries with ordered dicts).
type renderer struct {
	query bool
	order map[string]int // a query's hash keys, by position
}

func (r renderer) keys(m map[string]any) []string {
	ks := sortedKeys(m)
	if r.order != nil {
		sort.SliceStable(ks, func(i, j int) bool {
			oi, iok := r.order[ks[i]]
			oj, jok := r.order[ks[j]]
			if iok && jok {
				return oi < oj
			}
			return iok && !jok
		})
	}
	return ks
}

// pyStr is Python's str() of a JSON value: True, False, None, integers
// without a fraction.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// tsvCell is knack's _TsvOutput._dump_obj: a list prints its length, an
// object nothing (so that columns never shift), anything else its str().
func tsvCell(v any) string {
	switch x := v.(type) {
	case []any:
		return strconv.Itoa(len(x))
	case map[string]any:
		return ""
	}
	return pyStr(v)
}

// tsvRow is knack's _TsvOutput._dump_row: an object's values in key
// order, a list's items, each as tsvCell; a row that is one bool prints
// true or false (in a row of several, True or False).
func (r renderer) tsvRow(v any) string {
	var cells []string
	switch x := v.(type) {
	case map[string]any:
		for _, k := range r.keys(x) {
			cells = append(cells, tsvCell(x[k]))
		}
	case []any:
		for _, e := range x {
			cells = append(cells, tsvCell(e))
		}
	case bool:
		return strings.ToLower(pyStr(x)) // knack lowers a row that is one bool
	default:
		return tsvCell(v)
	}
	return strings.Join(cells, "\t")
}

// writeTSV is knack's format_tsv: a list one row per item (so a
// multi-select list prints one value per line), anything else one row.
func (r renderer) writeTSV(w io.Writer, v any) error {
	rows := []any{v}
	if list, ok := v.([]any); ok {
		rows = list
	}
	var b strings.Builder
	for _, e := range rows {
		b.WriteString(r.tsvRow(e))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tableSkip are the keys knack's automatic tables leave out.
var tableSkip = map[string]bool{"id": true, "type": true, "etag": true}

// tableRow is knack's _TableOutput._auto_table_item: an object's scalar,
// non-null values but id, type and etag, in key order (sorted without a
// query); a list's items as Column1…; a scalar as Result.
func (r renderer) tableRow(v any) ([]string, map[string]string) {
	cells := map[string]string{}
	var cols []string
	add := func(col string, val any) {
		cols = append(cols, col)
		cells[col] = pyStr(val)
	}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range r.keys(x) {
			switch x[k].(type) {
			case nil, []any, map[string]any:
				continue
			}
			if !tableSkip[k] && !strings.HasPrefix(k, "@odata") {
				add(strings.ToUpper(k[:1])+k[1:], x[k])
			}
		}
	case []any:
		for i, e := range x {
			add(fmt.Sprintf("Column%d", i+1), e)
		}
	default:
		add("Result", v)
	}
	return cols, cells
}

// writeTable prints rows as tabulate's "simple" format: a header, dashes
// as wide as each column, two spaces between columns. cols, when given,
// are a command's own columns (az's table transformers).
func (r renderer) writeTable(w io.Writer, v any, cols []string) error {
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	if len(rows) == 0 {
		// knack's _TableOutput.dump: no table, not even a header, and
		// the newline after it.
		_, err := io.WriteString(w, "\n")
		return err
	}
	var header []string
	var cells []map[string]string
	if len(cols) > 0 {
		keys := make([]string, len(cols))
		for i, c := range cols {
			key, title, ok := strings.Cut(c, ":")
			if !ok {
				title = strings.ToUpper(c[:1]) + c[1:]
			}
			keys[i] = key
			header = append(header, title)
		}
		for _, row := range rows {
			m, _ := row.(map[string]any)
			line := map[string]string{}
			for i, k := range keys {
				// "a|b": the first of the paths that has a value.
				for _, alt := range strings.Split(k, "|") {
					if val := lookupPath(m, alt); val != nil {
						line[header[i]] = pyStr(val)
						break
					}
				}
			}
			cells = append(cells, line)
		}
	} else {
		seen := map[string]bool{}
		for _, row := range rows {
			rc, line := r.tableRow(row)
			for _, c := range rc {
				if !seen[c] {
					seen[c] = true
					header = append(header, c)
				}
			}
			cells = append(cells, line)
		}
	}
	if len(header) == 0 {
		_, err := io.WriteString(w, "\n")
		return err
	}
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
		for _, line := range cells {
			widths[i] = max(widths[i], len([]rune(line[h])))
		}
	}
	var b strings.Builder
	writeLine := func(vals []string) {
		for i, v := range vals {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(v + strings.Repeat(" ", widths[i]-len([]rune(v))))
		}
		b.WriteString("\n")
	}
	writeLine(header)
	rule := make([]string, len(header))
	for i := range header {
		rule[i] = strings.Repeat("-", widths[i])
	}
	writeLine(rule)
	for _, line := range cells {
		vals := make([]string, len(header))
		for i, h := range header {
			vals[i] = line[h]
		}
		writeLine(vals)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// addResourceGroup adds resourceGroup to every object whose id names one,
// as azure-cli does to every command's result (core/commands,
// _add_resource_group and _parse_id): to nested objects too, but not
// under sourceVault; an object that has one keeps it.
func addResourceGroup(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			addResourceGroup(e)
		}
	case map[string]any:
		has := false
		for k := range x {
			if strings.EqualFold(k, "resourceGroup") {
				has = true
			}
		}
		if id, ok := x["id"].(string); ok && !has {
			if parts := strings.Split(id, "/"); len(parts) > 4 && parts[3] == "resourceGroups" {
				x["resourceGroup"] = parts[4]
			}
		}
		for k, e := range x {
			if k != "sourceVault" {
				addResourceGroup(e)
			}
		}
	}
}

// lookupPath finds a dotted key ("properties.provisioningState") in m.
func lookupPath(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[k]
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
