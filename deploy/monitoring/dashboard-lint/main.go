// Command dashboard-lint checks Grafana dashboards of Prometheus queries by the rules of
// Grafana's dashboard linter (github.com/grafana/dashboard-linter), under the same rule names,
// with Prometheus' own PromQL parser. Every finding is an error (the linter's --strict).
//
//	dashboard-lint DASHBOARD.json...
//
// Dashboard rules: a Prometheus data source variable named `datasource` labelled `Data source`
// (template-datasource-rule); `job` and `instance` variables that are multi-select Prometheus
// queries on $datasource with allValue `.+`, labelled `Job` and `Instance` (template-job-rule,
// template-instance-rule); query variables that are label_values/label_names/metrics/
// query_result of valid PromQL (template-label-promql-rule), refreshed on time range change
// (template-on-time-change-reload-rule); not editable (uneditable-dashboard).
//
// Panel rules: panels query $datasource (panel-datasource-rule), have a title and a description
// (panel-title-description-rule), a Grafana unit (panel-units-rule) and targets
// (panel-no-targets-rule).
//
// Target rules: valid PromQL (target-promql-rule); rate and irate over $__rate_interval
// (target-rate-interval-rule); every selector matches job=~"$job" and instance=~"$instance"
// (target-job-rule, target-instance-rule); a counter (`_total`) only inside rate, irate or
// increase (target-counter-agg-rule).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Editable   *bool  `json:"editable"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string          `json:"name"`
	Label      string          `json:"label"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource json.RawMessage `json:"datasource"`
	Multi      bool            `json:"multi"`
	AllValue   string          `json:"allValue"`
	Refresh    int             `json:"refresh"`
}

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []target        `json:"targets"`
	Panels      []panel         `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit     string          `json:"unit"`
			Mappings json.RawMessage `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		ReduceOptions struct {
			Fields string `json:"fields"`
		} `json:"reduceOptions"`
	} `json:"options"`
}

type target struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

// Panel types whose queries and looks the rules check, as the linter's.
var (
	queryPanels = set("stat", "singlestat", "graph", "table", "timeseries", "gauge")
	dsPanels    = set("singlestat", "graph", "table", "timeseries")
	// Grafana's unit IDs (packages/grafana-data/src/valueFormats/categories.ts), those a
	// dashboard of rates, counts, durations and sizes uses.
	units = set("none", "short", "percent", "percentunit", "string", "locale", "sci",
		"ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "clockms", "clocks",
		"bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes",
		"cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm", "mps", "mpm",
		"bool", "bool_yes_no", "bool_on_off", "hertz")
	counterFunctions = set("rate", "irate", "increase")
	// Grafana's global variables, with sample values that parse.
	rateInterval = 86399999 * time.Millisecond
	globals      = map[string]string{
		"__rate_interval": "86399999ms",
		"__interval":      "15s",
		"__interval_ms":   "15000",
		"__range":         "3600s",
		"__range_s":       "3600",
		"__range_ms":      "3600000",
	}
	variableRef = regexp.MustCompile(`\$(\w+)|\$\{([^}:]+)(?::[^}]*)?\}|\[\[([^\]]+)\]\]`)
	queryCall   = regexp.MustCompile(`^\s*(\w+)\((.*)\)\s*$`)
	labelName   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, item := range items {
		m[item] = true
	}
	return m
}

type linter struct {
	file     string
	problems []string
}

func (l *linter) report(rule, where, format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf("%s: %s: %s: %s", l.file, rule, where, fmt.Sprintf(format, args...)))
}

// uid reads a data source reference: "$datasource" or {"type": …, "uid": "$datasource"}.
func uid(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var ref struct {
		UID string `json:"uid"`
	}
	_ = json.Unmarshal(raw, &ref)
	return ref.UID
}

func onDatasource(raw json.RawMessage) bool {
	u := uid(raw)
	return u == "$datasource" || u == "${datasource}"
}

// query reads a variable's query: a string, or an object with a "query" string.
func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

// expand replaces Grafana's variables outside double-quoted strings with sample values, so that
// the expression parses; those inside strings (label matchers) stay as they are.
func expand(expr string, vars []variable) (string, error) {
	parts := strings.Split(expr, `"`)
	var failure error
	for i := 0; i < len(parts); i += 2 {
		parts[i] = variableRef.ReplaceAllStringFunc(parts[i], func(ref string) string {
			m := variableRef.FindStringSubmatch(ref)
			name := m[1] + m[2] + m[3]
			if value, ok := globals[name]; ok {
				return value
			}
			for _, v := range vars {
				if v.Name == name {
					return name
				}
			}
			failure = fmt.Errorf("unknown variable $%s", name)
			return ref
		})
	}
	return strings.Join(parts, `"`), failure
}

func parse(expr string, vars []variable) (parser.Expr, error) {
	expanded, err := expand(expr, vars)
	if err != nil {
		return nil, err
	}
	return parser.NewParser(parser.Options{}).ParseExpr(expanded)
}

func (l *linter) dashboardRules(d dashboard) {
	where := fmt.Sprintf("dashboard %q", d.Title)
	if d.Editable == nil || *d.Editable {
		l.report("uneditable-dashboard", where, "is editable, it should be set to 'editable: false'")
	}
	var datasources []variable
	byName := map[string]variable{}
	for _, v := range d.Templating.List {
		byName[v.Name] = v
		if strings.EqualFold(v.Type, "datasource") {
			datasources = append(datasources, v)
		}
	}
	if len(datasources) != 1 {
		l.report("template-datasource-rule", where, "has %d templated data sources, wants one", len(datasources))
	}
	for _, v := range datasources {
		if v.query() != "prometheus" {
			l.report("template-datasource-rule", where, "data source variable %q is of type %q, not prometheus", v.Name, v.query())
		}
		if v.Name != "datasource" || v.Label != "Data source" {
			l.report("template-datasource-rule", where, "data source variable %q labelled %q, should be 'datasource' labelled 'Data source'", v.Name, v.Label)
		}
	}
	for _, name := range []string{"job", "instance"} {
		rule := "template-" + name + "-rule"
		v, ok := byName[name]
		if !ok {
			l.report(rule, where, "is missing the %s template", name)
			continue
		}
		if !onDatasource(v.Datasource) {
			l.report(rule, where, "%s template should use datasource '$datasource', is currently '%s'", name, uid(v.Datasource))
		}
		if v.Type != "query" {
			l.report(rule, where, "%s template should be a Prometheus query, is currently '%s'", name, v.Type)
		}
		if label := strings.ToUpper(name[:1]) + name[1:]; v.Label != label {
			l.report(rule, where, "%s template should be labelled '%s', is currently '%s'", name, label, v.Label)
		}
		if !v.Multi {
			l.report(rule, where, "%s template should be a multi select", name)
		}
		if v.AllValue != ".+" {
			l.report(rule, where, "%s template allValue should be '.+', is currently '%s'", name, v.AllValue)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Refresh != 2 {
			l.report("template-on-time-change-reload-rule", where, "variable %q should be refreshed 'On time range change' (2), is %d", v.Name, v.Refresh)
		}
		if err := checkVariableQuery(v.query(), d.Templating.List); err != nil {
			l.report("template-label-promql-rule", where, "variable %q: invalid query %q: %v", v.Name, v.query(), err)
		}
	}
}

func checkVariableQuery(q string, vars []variable) error {
	m := queryCall.FindStringSubmatch(q)
	if m == nil {
		return fmt.Errorf("not a function call")
	}
	fn, arg := m[1], strings.TrimSpace(m[2])
	switch fn {
	case "label_values":
		selector, label := "", arg
		if i := strings.LastIndex(arg, ","); i >= 0 {
			selector, label = arg[:i], strings.TrimSpace(arg[i+1:])
		}
		if !labelName.MatchString(label) {
			return fmt.Errorf("%q is not a label name", label)
		}
		if strings.TrimSpace(selector) == "" {
			return nil
		}
		_, err := parse(selector, vars)
		return err
	case "label_names":
		if arg == "" {
			return nil
		}
		_, err := parse(arg, vars)
		return err
	case "metrics":
		_, err := regexp.Compile(arg)
		return err
	case "query_result":
		_, err := parse(arg, vars)
		return err
	}
	return fmt.Errorf("invalid function %q", fn)
}

func (l *linter) panelRules(d dashboard, p panel) {
	where := fmt.Sprintf("dashboard %q, panel %q", d.Title, p.Title)
	if dsPanels[p.Type] && !onDatasource(p.Datasource) {
		l.report("panel-datasource-rule", where, "does not use a templated datasource, uses '%s'", uid(p.Datasource))
	}
	if !queryPanels[p.Type] {
		return
	}
	if p.Title == "" || p.Description == "" {
		l.report("panel-title-description-rule", where, "has missing title or description")
	}
	mapped := len(p.FieldConfig.Defaults.Mappings) > 0 && string(p.FieldConfig.Defaults.Mappings) != "null" && string(p.FieldConfig.Defaults.Mappings) != "[]"
	if !(p.Type == "stat" && p.Options.ReduceOptions.Fields != "") && !mapped && !units[p.FieldConfig.Defaults.Unit] {
		l.report("panel-units-rule", where, "has no or invalid units defined: '%s'", p.FieldConfig.Defaults.Unit)
	}
	if len(p.Targets) == 0 {
		l.report("panel-no-targets-rule", where, "has no targets")
	}
	for _, t := range p.Targets {
		l.targetRules(d, p, t)
	}
}

func (l *linter) targetRules(d dashboard, p panel, t target) {
	where := fmt.Sprintf("dashboard %q, panel %q, target %s", d.Title, p.Title, t.RefID)
	if len(t.Datasource) > 0 && !onDatasource(t.Datasource) {
		l.report("panel-datasource-rule", where, "does not use a templated datasource, uses '%s'", uid(t.Datasource))
	}
	expr, err := parse(t.Expr, d.Templating.List)
	if err != nil {
		l.report("target-promql-rule", where, "invalid PromQL query %q: %v", t.Expr, err)
		return
	}
	for _, matchers := range parser.ExtractSelectors(expr) {
		for _, name := range []string{"job", "instance"} {
			if !hasMatcher(matchers, name, "$"+name) {
				l.report("target-"+name+"-rule", where, "a selector of %q has no %s=~\"$%s\" matcher", t.Expr, name, name)
			}
		}
	}
	_ = parser.Walk(inspector(func(node parser.Node, path []parser.Node) error {
		switch n := node.(type) {
		case *parser.MatrixSelector:
			if len(path) == 0 || n.Range == rateInterval {
				return nil
			}
			if call, ok := path[len(path)-1].(*parser.Call); ok && (call.Func.Name == "rate" || call.Func.Name == "irate") {
				l.report("target-rate-interval-rule", where, "%q should use $__rate_interval", t.Expr)
			}
		case *parser.VectorSelector:
			if !strings.HasSuffix(n.Name, "_total") {
				return nil
			}
			ok := len(path) >= 2
			if ok {
				_, ranged := path[len(path)-1].(*parser.MatrixSelector)
				call, called := path[len(path)-2].(*parser.Call)
				ok = ranged && called && counterFunctions[call.Func.Name]
			}
			if !ok {
				l.report("target-counter-agg-rule", where, "counter %s in %q is not inside rate, irate or increase", n.Name, t.Expr)
			}
		}
		return nil
	}), expr, nil)
}

func hasMatcher(matchers []*labels.Matcher, name, value string) bool {
	for _, m := range matchers {
		if m.Name == name && m.Type == labels.MatchRegexp && m.Value == value {
			return true
		}
	}
	return false
}

type inspector func(parser.Node, []parser.Node) error

func (f inspector) Visit(node parser.Node, path []parser.Node) (parser.Visitor, error) {
	if err := f(node, path); err != nil {
		return nil, err
	}
	return f, nil
}

func lint(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	l := &linter{file: file}
	if d.Title == "" || d.UID == "" {
		l.report("dashboard", "dashboard", "has no title or no uid")
	}
	l.dashboardRules(d)
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if ids[p.ID] {
				l.report("dashboard", fmt.Sprintf("panel %q", p.Title), "id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			l.panelRules(d, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return l.problems, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-lint DASHBOARD.json...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		problems, err := lint(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			continue
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		failed = failed || len(problems) > 0
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("%d dashboards pass the dashboard linter's rules\n", len(os.Args)-1)
}
