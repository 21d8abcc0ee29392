package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

var errSlow = errors.New("events: not the encoder's shape")

// Decode reads one delivery-log line into r, with the result encoding/json
// would give. The log's readers (event outputs, the advisor) decode every
// record, so it takes a fast road for what appendRecord writes: a flat
// object of known keys, no spaces, values that are strings, integers or
// true. Anything else (an unknown key, a float, null, nesting) is left to
// encoding/json.
func Decode(line []byte, r *Record) error {
	var fast Record
	if decodeFast(line, &fast) == nil {
		*r = fast
		return nil
	}
	*r = Record{}
	return json.Unmarshal(line, r)
}

func decodeFast(b []byte, r *Record) error {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return errSlow
	}
	i := 1
	if len(b) == 2 {
		return nil // {}
	}
	for {
		// A key: plain ASCII between quotes.
		if b[i] != '"' {
			return errSlow
		}
		j := i + 1
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		if j+1 >= len(b) || b[j] != '"' || b[j+1] != ':' {
			return errSlow
		}
		key := b[i+1 : j]
		i = j + 2
		end, err := decodeField(b, i, key, r)
		if err != nil {
			return err
		}
		i = end
		switch {
		case i == len(b)-1 && b[i] == '}':
			return nil
		case i < len(b)-1 && b[i] == ',':
			i++
		default:
			return errSlow
		}
	}
}

// decodeField stores the value at b[i:] under key and returns where it
// ends.
func decodeField(b []byte, i int, key []byte, r *Record) (int, error) {
	var s *string
	var n *int64
	var small *int
	switch string(key) {
	case "type":
		var t string
		end, err := decodeString(b, i, &t)
		r.Type = Type(t)
		return end, err
	case "time":
		end, err := stringEnd(b, i)
		if err != nil {
			return 0, err
		}
		if err := r.Time.UnmarshalJSON(b[i:end]); err != nil {
			return 0, errSlow
		}
		return end, nil
	case "tls":
		if len(b)-i >= 4 && string(b[i:i+4]) == "true" {
			r.TLS = true
			return i + 4, nil
		}
		if len(b)-i >= 5 && string(b[i:i+5]) == "false" {
			r.TLS = false
			return i + 5, nil
		}
		return 0, errSlow
	case "code":
		small = &r.Code
	case "attempt":
		small = &r.Attempt
	case "conn_use":
		small = &r.ConnUse
	case "size":
		n = &r.Size
	case "id":
		s = &r.ID
	case "delivery_id":
		s = &r.DeliveryID
	case "sender":
		s = &r.Sender
	case "recipient":
		s = &r.Recipient
	case "site":
		s = &r.Site
	case "mx_host":
		s = &r.MXHost
	case "mx_ip":
		s = &r.MXIP
	case "source_ip":
		s = &r.SourceIP
	case "rule":
		s = &r.Rule
	case "enhanced_code":
		s = &r.EnhancedCode
	case "text":
		s = &r.Text
	case "reason":
		s = &r.Reason
	case "class":
		s = &r.Class
	case "status":
		s = &r.Status
	case "detail":
		s = &r.Detail
	case "state":
		s = &r.State
	case "tls_info":
		s = &r.TLSInfo
	case "tls_policy":
		s = &r.TLSPolicy
	default:
		return 0, errSlow
	}
	if s != nil {
		return decodeString(b, i, s)
	}
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
	if err != nil || len(b[i:j]) > 1 && (b[i] == '0' || b[i] == '-' && b[i+1] == '0') {
		return 0, errSlow // leading zeros are not JSON
	}
	if small != nil {
		if int64(int(v)) != v {
			return 0, errSlow
		}
		*small = int(v)
	} else {
		*n = v
	}
	return j, nil
}

// stringEnd returns the index just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errSlow
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errSlow
}

// decodeString decodes the string at b[i] into s: as is when it has no
// escape, no control character and is valid UTF-8, else by encoding/json.
func decodeString(b []byte, i int, s *string) (int, error) {
	end, err := stringEnd(b, i)
	if err != nil {
		return 0, err
	}
	raw := b[i+1 : end-1]
	simple := utf8.Valid(raw)
	for _, c := range raw {
		if c < 0x20 || c == '\\' {
			simple = false
			break
		}
	}
	if simple {
		*s = string(raw)
		return end, nil
	}
	if err := json.Unmarshal(b[i:end], s); err != nil {
		return 0, errSlow
	}
	return end, nil
}
