#!/usr/bin/env bash
# The demo's simulated Microsoft Teams side (sourced by scripts/demo.sh): the same simulated
# Direct Routing proxy the tests use (Kamailio with its TLS module and tests/peers/teams/
# teams-proxy.cfg, a CA of the demo's own) and one Teams user behind it — Megan Bowen, the
# demo's escalations expert, as a baresip phone that answers by itself and plays a tone. The
# router is the SBC `sbc.contoso.example` of tenant Contoso: an agent who consults or transfers
# to the escalations experts rings Megan in Teams, and her presence in the simulated tenant
# turns Busy/InACall while she is in the call.
#
# teams_demo_start DIR SIM_URL SIM_TENANT writes the router's TOML for it to DIR/router-teams.toml
# and returns 0, or says why not and returns 1 (the demo then runs without Teams).
# teams_demo_stop stops what it started. Everything listens on 127.0.0.1.

TEAMS_SBC_FQDN="sbc.contoso.example"
TEAMS_SBC_TLS_PORT=7761
TEAMS_PROXY_PORTS=(7771 7772 7773) # sip., sip2., sip3.pstnhub.microsoft.com
TEAMS_USERS_PORT=7774
TEAMS_MEGAN_NUMBER="+14255550106"
TEAMS_MEGAN_ID="05184149-e281-56da-9f74-f6e7a5cdd23d" # MeganB's id in the simulated tenant
TEAMS_KAMAILIO_PID=""
TEAMS_BARESIP_PID=""

teams_demo_certificates() {
    local dir="$1"
    # A CA of the demo's own; the proxy's certificate names Microsoft's three proxies, the
    # SBC's names its FQDN; both serve as client and server certificates (mutual TLS).
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 3650 \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=Switchboard demo Teams CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null || return 1
    local name sans cn
    for name in proxy sbc; do
        if [ "$name" = proxy ]; then
            sans="DNS:sip.pstnhub.microsoft.com,DNS:sip2.pstnhub.microsoft.com,DNS:sip3.pstnhub.microsoft.com"
        else
            sans="DNS:$TEAMS_SBC_FQDN"
        fi
        cn="${sans%%,*}"
        cn="${cn#DNS:}"
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$cn" 2>/dev/null \
            && printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
                "$sans" >"$dir/$name.ext" \
            && openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 3650 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null \
            || return 1
        rm -f "$dir/$name.csr" "$dir/$name.ext"
    done
}

teams_demo_start() {
    local dir="$1" sim_url="$2" sim_tenant="$3"
    local kamailio=/usr/sbin/kamailio
    mkdir -p "$dir"
    [ -x "$kamailio" ] || { say "Kamailio is not installed"; return 1; }
    command -v baresip >/dev/null || { say "baresip is not installed"; return 1; }
    if [ ! -f "$dir/sbc.pem" ] || [ ! -f "$dir/proxy.pem" ]; then
        teams_demo_certificates "$dir" || { say "openssl could not make the demo's certificates"; return 1; }
    fi
    cp "$SB_ROOT/tests/peers/teams/teams-proxy.cfg" "$dir/teams-proxy.cfg"
    cat >"$dir/teams-data.cfg" <<CFG
route[TEAMS_DATA] {
    \$sht(gateway=>$TEAMS_SBC_FQDN) = 1;
    \$sht(mri=>$TEAMS_MEGAN_NUMBER) = "8:orgid:$TEAMS_MEGAN_ID";
    \$sht(mri_user=>8:orgid:$TEAMS_MEGAN_ID) = "$TEAMS_MEGAN_NUMBER";
    \$sht(tenant=>$TEAMS_MEGAN_NUMBER) = "$sim_tenant";
    \$sht(route=>$TEAMS_MEGAN_NUMBER) = "$TEAMS_SBC_FQDN";
    \$sht(presence=>$TEAMS_MEGAN_NUMBER) = "$TEAMS_MEGAN_ID";
}
CFG
    "$kamailio" -DD -E -f "$dir/teams-proxy.cfg" -P "$dir/kamailio.pid" -Y "$dir" \
        -A "SIP_PORT=${TEAMS_PROXY_PORTS[0]}" -A "SIP2_PORT=${TEAMS_PROXY_PORTS[1]}" \
        -A "SIP3_PORT=${TEAMS_PROXY_PORTS[2]}" -A "USERS_PORT=$TEAMS_USERS_PORT" \
        -A "TLS_CERT=\"$dir/proxy.pem\"" -A "TLS_KEY=\"$dir/proxy.key\"" -A "TLS_CA=\"$dir/ca.pem\"" \
        -A "TENANT_SIM_URL=\"${sim_url%/}\"" >/dev/null 2>"$dir/teams-proxy.log" &
    TEAMS_KAMAILIO_PID=$!
    local up=""
    for _ in $(seq 1 100); do
        kill -0 "$TEAMS_KAMAILIO_PID" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/${TEAMS_PROXY_PORTS[2]}") 2>/dev/null; then
            up=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        kill -TERM "$TEAMS_KAMAILIO_PID" 2>/dev/null || true
        say "the simulated Teams proxy did not start; see $dir/teams-proxy.log"
        TEAMS_KAMAILIO_PID=""
        return 1
    fi

    # Megan in Teams: a baresip phone registered with the proxy, answering with a tone.
    local phone="$dir/megan"
    mkdir -p "$phone"
    sed -e "s/@SIP_PORT@/7775/; s/@CTRL_PORT@/7776/; s#@DIR@#$phone#g; s/@TONE_HZ@/523/" \
        -e "s/@RTP_FIRST@/17800/; s/@RTP_LAST@/17898/" -e '/^module\t*sndfile.so/d' \
        "$SB_ROOT/tests/peers/baresip/config" >"$phone/config"
    printf '<sip:%s@127.0.0.1:%s>;regint=600;answermode=auto;mediaenc=srtp-mand\n' \
        "$TEAMS_MEGAN_NUMBER" "$TEAMS_USERS_PORT" >"$phone/accounts"
    baresip -f "$phone" </dev/null >"$dir/megan-in-teams.log" 2>&1 &
    TEAMS_BARESIP_PID=$!
    for _ in $(seq 1 100); do
        grep -q "teams-proxy: registered user=$TEAMS_MEGAN_NUMBER" "$dir/teams-proxy.log" 2>/dev/null && break
        kill -0 "$TEAMS_BARESIP_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "teams-proxy: registered user=$TEAMS_MEGAN_NUMBER" "$dir/teams-proxy.log" ||
        say "Megan's Teams phone did not register; see $dir/megan-in-teams.log"

    cat >"$dir/router-teams.toml" <<TOML

# The simulated Teams side (scripts/demo-teams.sh): Contoso's Direct Routing trunk, the router
# its SBC $TEAMS_SBC_FQDN over mutual TLS with the demo's CA.
[[tenants.trunks]]
name = "teams"
probe_seconds = 60
[tenants.trunks.direct_routing]
fqdn = "$TEAMS_SBC_FQDN"

[sip.tls]
listen = "127.0.0.1:$TEAMS_SBC_TLS_PORT"
certificate = "$dir/sbc.pem"
key = "$dir/sbc.key"
ca = "$dir/ca.pem"

[sip.resolve]
"sip.pstnhub.microsoft.com" = "127.0.0.1:${TEAMS_PROXY_PORTS[0]}"
"sip2.pstnhub.microsoft.com" = "127.0.0.1:${TEAMS_PROXY_PORTS[1]}"
"sip3.pstnhub.microsoft.com" = "127.0.0.1:${TEAMS_PROXY_PORTS[2]}"
TOML
    return 0
}

teams_demo_stop() {
    if [ -n "$TEAMS_BARESIP_PID" ] && kill -0 "$TEAMS_BARESIP_PID" 2>/dev/null; then
        kill -TERM "$TEAMS_BARESIP_PID" 2>/dev/null || true
        wait "$TEAMS_BARESIP_PID" 2>/dev/null || true
    fi
    if [ -n "$TEAMS_KAMAILIO_PID" ] && kill -0 "$TEAMS_KAMAILIO_PID" 2>/dev/null; then
        say "stopping the simulated Teams proxy"
        kill -TERM "$TEAMS_KAMAILIO_PID" 2>/dev/null || true
        wait "$TEAMS_KAMAILIO_PID" 2>/dev/null || true
    fi
}
