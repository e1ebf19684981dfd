package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	jmespath "github.com/keyward/keyward/internal/third_party/jmespath"
	"github.com/spf13/cobra"
)

// outputFlags are -o and --query, which every client command takes.
type outputFlags struct {
	format string
	query  string
	// columns, when set, are the table columns (keys of each row), in
	// order, as az's table transformers choose them for a command.
	columns []string
}

// tableColumns sets the columns of cmd's table output.
func tableColumns(cmd *cobra.Command, cols ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations["table"] = strings.Join(cols, ",")
	return cmd
}

func (o *outputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "json", "output format: json, jsonc, tsv, table, none")
	cmd.Flags().StringVar(&o.query, "query", "", "JMESPath query string, applied to the output")
}

// print renders v (any JSON-encodable value) as az would.
func (o *outputFlags) print(w io.Writer, v any) error {
	if v == nil {
		return nil
	}
	generic, err := toGeneric(v)
	if err != nil {
		return err
	}
	if o.query != "" {
		if generic, err = jmespath.Search(o.query, generic); err != nil {
			return usagef("invalid --query %q: %v", o.query, err)
		}
	}
	switch o.format {
	case "json", "jsonc", "":
		// As az: URLs and SAS tokens print with their & and <, unescaped.
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(generic)
	case "tsv":
		return writeTSV(w, generic)
	case "table":
		if o.query != "" {
			return writeTable(w, generic, nil) // a query chooses its own shape
		}
		return writeTable(w, generic, o.columns)
	case "none":
		return nil
	}
	return usagef("unknown output format %q: use json, tsv, table or none", o.format)
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

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case bool:
		return fmt.Sprint(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// tsvRow is one object's scalar values in key order, as az's tsv prints.
func tsvRow(v any) string {
	if s, ok := scalar(v); ok {
		return s
	}
	switch x := v.(type) {
	case map[string]any:
		var cells []string
		for _, k := range sortedKeys(x) {
			if s, ok := scalar(x[k]); ok {
				cells = append(cells, s)
			}
		}
		return strings.Join(cells, "\t")
	case []any:
		var cells []string
		for _, e := range x {
			if s, ok := scalar(e); ok {
				cells = append(cells, s)
			}
		}
		return strings.Join(cells, "\t")
	}
	return ""
}

func writeTSV(w io.Writer, v any) error {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if _, err := fmt.Fprintln(w, tsvRow(e)); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := fmt.Fprintln(w, tsvRow(v))
	return err
}

func writeTable(w io.Writer, v any, cols []string) error {
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if len(cols) > 0 {
			break
		}
		if m, ok := r.(map[string]any); ok {
			for _, k := range sortedKeys(m) {
				if _, isScalar := scalar(m[k]); isScalar && !seen[k] && !strings.HasPrefix(k, "@odata") {
					seen[k] = true
					cols = append(cols, k)
				}
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(cols) == 0 {
		cols = []string{"Result"}
		for i, r := range rows {
			s, _ := scalar(r)
			rows[i] = map[string]any{"Result": s}
		}
	}
	var head, rule []string
	for _, c := range cols {
		title := strings.ToUpper(c[:1]) + c[1:]
		head, rule = append(head, title), append(rule, strings.Repeat("-", len(title)))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	fmt.Fprintln(tw, strings.Join(rule, "\t"))
	for _, r := range rows {
		m, _ := r.(map[string]any)
		var cells []string
		for _, c := range cols {
			s, _ := scalar(m[c])
			cells = append(cells, s)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
