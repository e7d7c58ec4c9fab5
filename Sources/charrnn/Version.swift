// The version `charrnn --version` prints (also in `serve`'s /v1/models and its Server header).

let charrnnVersion = "0.11.0"
