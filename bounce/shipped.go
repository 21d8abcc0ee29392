package bounce

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/pelletier/go-toml/v2"
)

//go:embed rules.toml
var shippedTOML []byte

// tomlRule is a rule as written in TOML: durations are strings ("30m").
type tomlRule struct {
	Name     string `toml:"name"`
	Code     string `toml:"code"`
	Enhanced string `toml:"enhanced"`
	Match    string `toml:"match"`
	Reason   string `toml:"reason"`
	Class    string `toml:"class"`
	Retry    string `toml:"retry"`
}

// Shipped returns the embedded shipped rule set (rules.toml), in order. The
// file is checked by the tests, so a decoding error here is a build defect
// and panics.
func Shipped() []Rule {
	rules, err := parseRules(shippedTOML)
	if err != nil {
		panic("bounce: shipped rules.toml: " + err.Error())
	}
	return rules
}

// parseRules decodes a TOML document of [[rule]] tables, strictly: unknown
// keys are errors.
func parseRules(data []byte) ([]Rule, error) {
	var doc struct {
		Rule []tomlRule `toml:"rule"`
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		var se *toml.StrictMissingError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s", se.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, fmt.Errorf("line %d column %d: %v", line, col, de)
		}
		return nil, err
	}
	out := make([]Rule, 0, len(doc.Rule))
	for _, t := range doc.Rule {
		r := Rule{
			Name: t.Name, Code: t.Code, Enhanced: t.Enhanced, Match: t.Match,
			Reason: Reason(t.Reason), Class: Class(t.Class),
		}
		if t.Retry != "" {
			d, err := time.ParseDuration(t.Retry)
			if err != nil {
				return nil, fmt.Errorf("rule %q: retry: %v", t.Name, err)
			}
			r.Retry = d
		}
		out = append(out, r)
	}
	return out, nil
}
