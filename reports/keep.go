package reports

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// keeper stores unusable reports under dir within bounds: at most maxFiles
// files and maxBytes bytes (the oldest removed first), and never when the
// filesystem would keep less than minFree bytes free.
type keeper struct {
	dir      string
	maxBytes int64
	maxFiles int
	minFree  int64
	free     func(dir string) (uint64, error)

	mu     sync.Mutex
	loaded bool
	files  []keptFile // oldest first
	bytes  int64
}

type keptFile struct {
	name string
	size int64
}

// load learns what earlier runs kept, oldest first. k.mu is held.
func (k *keeper) load() error {
	if k.loaded {
		return nil
	}
	if err := os.MkdirAll(k.dir, 0o750); err != nil {
		return err
	}
	ents, err := os.ReadDir(k.dir)
	if err != nil {
		return err
	}
	type info struct {
		keptFile
		mod int64
	}
	var list []info
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		list = append(list, info{keptFile{e.Name(), fi.Size()}, fi.ModTime().UnixNano()})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].mod != list[j].mod {
			return list[i].mod < list[j].mod
		}
		return list[i].name < list[j].name
	})
	for _, f := range list {
		k.files = append(k.files, f.keptFile)
		k.bytes += f.size
	}
	k.loaded = true
	return nil
}

// Reasons a report was not kept.
const (
	notKeptDisabled = "disabled" // unparsed_max_files or unparsed_max_bytes is 0
	notKeptTooBig   = "too_big"  // larger than unparsed_max_bytes alone
	notKeptLowDisk  = "low_disk" // the filesystem is below unparsed_min_free
	notKeptError    = "error"    // the directory or file could not be written
)

// keep writes body as name and returns its path, with the number of older
// files it removed to make room; or "" and why it kept nothing.
func (k *keeper) keep(name string, body []byte) (path string, dropped int, why string, err error) {
	size := int64(len(body))
	if k.maxFiles == 0 || k.maxBytes == 0 {
		return "", 0, notKeptDisabled, nil
	}
	if size > k.maxBytes {
		return "", 0, notKeptTooBig, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.load(); err != nil {
		return "", 0, notKeptError, err
	}
	if k.free != nil {
		if free, err := k.free(k.dir); err == nil && free < uint64(k.minFree)+uint64(size) {
			return "", 0, notKeptLowDisk, nil
		}
	}
	for len(k.files) > 0 && (len(k.files) >= k.maxFiles || k.bytes+size > k.maxBytes) {
		old := k.files[0]
		if err := os.Remove(filepath.Join(k.dir, old.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Keeping more would break the bound.
			return "", dropped, notKeptError, err
		}
		k.files = k.files[1:]
		k.bytes -= old.size
		dropped++
	}
	path = filepath.Join(k.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", dropped, notKeptError, err
	}
	_, err = f.Write(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", dropped, notKeptError, err
	}
	k.files = append(k.files, keptFile{name, size})
	k.bytes += size
	return path, dropped, "", nil
}

// usage is what is kept now.
func (k *keeper) usage() (files int, bytes int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.files), k.bytes
}
