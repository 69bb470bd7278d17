// Command gotemplate renders templates with Go's own text/template and the sprig
// functions, as External Secrets' template engine v2 does (missingkey=error, sprig's
// TxtFuncMap without env/expandenv, the data a map of strings). The differential test
// tests/integration/peers/test_gotext_vs_go.py compares kustos.gitops.gotext with it.
//
// Input (stdin): a JSON list of {"template": "...", "data": {"key": "value"}}.
// Output (stdout): a JSON list of {"output": "...", "error": false} or {"error": true}.
// With "-bench N" (bench/gotext.py): each case is executed N times after one parse, then
// parsed and executed N times; the output is a JSON list of those timings (p50, p99, mean).
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strconv"
	"text/template"
	"time"

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

type timing struct {
	P50  int64   `json:"p50_ns"`
	P99  int64   `json:"p99_ns"`
	Mean float64 `json:"mean_ns"`
}

func summarize(durations []int64) timing {
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	var total int64
	for _, d := range durations {
		total += d
	}
	n := len(durations)
	return timing{P50: durations[n/2], P99: durations[(n*99)/100], Mean: float64(total) / float64(n)}
}

func bench(c testCase, funcs template.FuncMap, n int) map[string]timing {
	parsed := template.Must(template.New("t").Option("missingkey=error").Funcs(funcs).Parse(c.Template))
	execute := make([]int64, n)
	whole := make([]int64, n)
	var buf bytes.Buffer
	for i := 0; i < n; i++ {
		buf.Reset()
		start := time.Now()
		if err := parsed.Execute(&buf, c.Data); err != nil {
			panic(err)
		}
		execute[i] = int64(time.Since(start))
	}
	for i := 0; i < n; i++ {
		buf.Reset()
		start := time.Now()
		t := template.Must(template.New("t").Option("missingkey=error").Funcs(funcs).Parse(c.Template))
		if err := t.Execute(&buf, c.Data); err != nil {
			panic(err)
		}
		whole[i] = int64(time.Since(start))
	}
	return map[string]timing{"execute": summarize(execute), "parse_execute": summarize(whole)}
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
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if len(os.Args) == 3 && os.Args[1] == "-bench" {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil || n < 1 {
			os.Exit(2)
		}
		timings := make([]map[string]timing, 0, len(cases))
		for _, c := range cases {
			timings = append(timings, bench(c, funcs, n))
		}
		if err := encoder.Encode(timings); err != nil {
			os.Exit(3)
		}
		return
	}
	out := make([]result, 0, len(cases))
	for _, c := range cases {
		out = append(out, render(c, funcs))
	}
	if err := encoder.Encode(out); err != nil {
		os.Exit(3)
	}
}
