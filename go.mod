module github.com/haven-ha/haven

go 1.26.8
