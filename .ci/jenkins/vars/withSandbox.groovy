// withSandbox: a sandbox from a microshop sandbox server around a block of pipeline steps, with
// nothing on the agent but curl (docs/sandboxes.md, "In CI"). Load this folder as a shared
// library, then:
//
//   withSandbox(server: 'http://127.0.0.1:3100', credentialsId: 'microshop-sandbox-token',
//               duration: '30m', blueprint: '.ci/blueprint.json') {
//       sh 'python3 -m pytest --confcutdir tests/e2e tests/e2e'
//   }
//
// The block runs with MICROSHOP_GATEWAY_URL and the sandbox's other variables set. The sandbox is
// deleted in `finally`, so also when the block fails or the build is aborted; should even that
// never run (the agent died), the sandbox ends by itself after `duration`.
def call(Map options = [:], Closure body) {
    String name = options.name ?: sandboxName("jenkins-${env.BUILD_NUMBER}-${env.JOB_BASE_NAME}")
    Map settings = [
        MICROSHOP_SANDBOX_SERVER: options.server ?: error('withSandbox needs server: URL'),
        SANDBOX: name,
        SANDBOX_DURATION: options.duration ?: '30m',
        SANDBOX_BLUEPRINT: options.blueprint ?: '',
    ]
    withCredentials([string(credentialsId: options.credentialsId ?: 'microshop-sandbox-token',
                            variable: 'MICROSHOP_SANDBOX_SERVER_TOKEN')]) {
        withEnv(settings.collect { key, value -> "${key}=${value}" }) {
            try {
                // printf is a shell builtin: the token reaches curl without appearing in `ps`.
                sh '''
                    blueprint=""
                    if [ -n "$SANDBOX_BLUEPRINT" ]; then
                        blueprint=", \\"blueprint\\": $(cat "$SANDBOX_BLUEPRINT")"
                    fi
                    printf 'Authorization: Bearer %s\\n' "$MICROSHOP_SANDBOX_SERVER_TOKEN" |
                        curl --silent --show-error --fail-with-body --header @- \\
                            --header 'Content-Type: application/json' \\
                            --data-binary "{\\"name\\": \\"$SANDBOX\\", \\"duration\\": \\"$SANDBOX_DURATION\\", \\"owner\\": \\"jenkins\\"$blueprint}" \\
                            "$MICROSHOP_SANDBOX_SERVER/sandboxes?wait=300"
                    printf 'Authorization: Bearer %s\\n' "$MICROSHOP_SANDBOX_SERVER_TOKEN" |
                        curl --silent --show-error --fail-with-body --header @- \\
                            --output .sandbox.env "$MICROSHOP_SANDBOX_SERVER/sandboxes/$SANDBOX/environment"
                '''
                List variables = readFile('.sandbox.env').readLines().findAll { it.contains('=') }
                withEnv(variables) {
                    body()
                }
            } finally {
                sh '''
                    printf 'Authorization: Bearer %s\\n' "$MICROSHOP_SANDBOX_SERVER_TOKEN" |
                        curl --silent --show-error --header @- --request DELETE \\
                            "$MICROSHOP_SANDBOX_SERVER/sandboxes/$SANDBOX" || true
                    rm -f .sandbox.env
                '''
            }
        }
    }
}

// Sandbox names are at most 40 lower-case letters, digits and dashes.
String sandboxName(String wanted) {
    String name = wanted.toLowerCase().replaceAll(/[^a-z0-9-]+/, '-').replaceAll(/^-+/, '')
    return name.take(40).replaceAll(/-+$/, '')
}
