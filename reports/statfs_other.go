//go:build !(linux || darwin || freebsd)

package reports

import "errors"

// freeSpace cannot be read here: the file count and size bounds still hold.
func freeSpace(string) (uint64, error) { return 0, errors.ErrUnsupported }
