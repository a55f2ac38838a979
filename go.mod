module github.com/busline/bus

go 1.26

require github.com/gobwas/glob v1.1.0
