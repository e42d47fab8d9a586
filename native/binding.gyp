# The peer-credentials addon (peercred.c): plain C against node_api.h, built by
# scripts/native-addon.mjs (npm run setup, npm run build, npm ci).
{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["peercred.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
