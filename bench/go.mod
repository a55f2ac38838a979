module github.com/busline/bus/bench

go 1.26.0

require (
	github.com/busline/bus v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/gobwas/glob v1.1.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
)

replace github.com/busline/bus => ../
