package stream

var Covers = covers
