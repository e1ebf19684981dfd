package jmespath

// HashKeys returns the keys of every multi-select hash in expression
// ({a: x, b: y}), in the order written, first appearance first. The Azure
// CLI evaluates queries with ordered dictionaries, so its tsv and table
// output keep that order; this package's maps do not. (Keyward's
// addition, not upstream's.)
func HashKeys(expression string) ([]string, error) {
	ast, err := NewParser().Parse(expression)
	if err != nil {
		return nil, err
	}
	var keys []string
	seen := map[string]bool{}
	var walk func(n ASTNode)
	walk = func(n ASTNode) {
		if n.nodeType == ASTKeyValPair {
			if k, ok := n.value.(string); ok && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(ast)
	return keys, nil
}
