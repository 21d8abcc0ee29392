package warmup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// savedPair is a pair's state on disk.
type savedPair struct {
	Key       string        `json:"key"`
	Day       int64         `json:"day"`
	Started   int64         `json:"started"`
	Step      int           `json:"step"`
	Today     Health        `json:"today"`
	Yesterday Health        `json:"yesterday"`
	Local     int64         `json:"local,omitempty"`
	History   []DayDecision `json:"history,omitempty"`
}

type savedState struct {
	Version int         `json:"version"`
	Pairs   []savedPair `json:"pairs"`
}

// Save writes the state to deps.Path atomically: a temporary file, fsync,
// rename, so that a crash leaves the old state or the new one, never half.
func (t *Tracker) Save() error {
	if t.deps.Path == "" {
		return nil
	}
	t.saved <- struct{}{}
	defer func() { <-t.saved }()
	t.mu.Lock()
	st := savedState{Version: 1}
	for _, p := range t.pairs {
		st.Pairs = append(st.Pairs, savedPair{Key: p.plan.Key(), Day: p.day, Started: p.started, Step: p.step,
			Today: p.today, Yesterday: p.yday, Local: p.local, History: p.history})
	}
	t.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(t.deps.Path), ".warmup-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, t.deps.Path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(t.deps.Path)); err == nil {
		_ = d.Sync() // the rename itself durable
		d.Close()
	}
	return nil
}

// load reads deps.Path: pairs still planned take their saved state.
func (t *Tracker) load() error {
	if t.deps.Path == "" {
		return nil
	}
	b, err := os.ReadFile(t.deps.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("warm-up state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("warm-up state %s: %w", t.deps.Path, err)
	}
	byKey := map[string]savedPair{}
	for _, s := range st.Pairs {
		byKey[s.Key] = s
	}
	for _, p := range t.pairs {
		s, ok := byKey[p.plan.Key()]
		if !ok {
			continue
		}
		p.day, p.started, p.step = s.Day, s.Started, min(s.Step, len(p.plan.Schedule))
		p.today, p.yday, p.local, p.history = s.Today, s.Yesterday, s.Local, s.History
	}
	return nil
}
