// Command gotemplate renders templates with Go's own text/template and the sprig
// functions, as External Secrets' template engine v2 does (missingkey=error, sprig's
// TxtFuncMap without env/expandenv, the data a map of strings). The differential test
// tests/integration/peers/test_gotext_vs_go.py compares kustos.gitops.gotext with it.
//
// Input (stdin): a JSON list of {"template": "...", "data": {"key": "value"}}.
// Output (stdout): a JSON list of {"output": "...", "error": false} or {"error": true}.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

type testCase struct {
	Template string            `json:"template"`
	Data     map[string]string `json:"data"`
}

type result struct {
	Output string `json:"output"`
	Error  bool   `json:"error"`
}

func render(c testCase, funcs template.FuncMap) (r result) {
	defer func() {
		if recover() != nil {
			r = result{Error: true}
		}
	}()
	t, err := template.New("t").Option("missingkey=error").Funcs(funcs).Parse(c.Template)
	if err != nil {
		return result{Error: true}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, c.Data); err != nil {
		return result{Error: true}
	}
	return result{Output: buf.String()}
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		os.Stderr.WriteString("bad input: " + err.Error() + "\n")
		os.Exit(2)
	}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	out := make([]result, 0, len(cases))
	for _, c := range cases {
		out = append(out, render(c, funcs))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(out); err != nil {
		os.Exit(3)
	}
}
