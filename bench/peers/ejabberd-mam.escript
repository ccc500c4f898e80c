#!/usr/bin/env escript
%% bench/compare.sh's archive scenarios: counts, empties or fills mod_mam's Mnesia table
%% (archive_msg, one record per archived message per account) on a running ejabberd node.
%%
%% fill writes N messages from PEER to OWNER (usernames on HOST) as mod_mam_mnesia stores them:
%% an #archive_msg{} (include/mod_mam.hrl of ejabberd 23.01: us, id, timestamp, peer,
%% bare_peer, packet, nick, type) for each party, the id the archiving time in microseconds as
%% ejabberd gives it, one second apart and ending now, the packet the message's #xmlel{}. By
%% mnesia:dirty_write/1 in batches of 5000 over one distribution connection: through the server
%% the fill ran at about 125 messages/s (every archived message a write to the table's dets
%% file), a 100k-message archive in over 13 minutes.
%%
%% Usage (distribution flags come from ERL_FLAGS, as for ejabberd-accounts.escript):
%%   ERL_FLAGS="..." escript ejabberd-mam.escript NODE count|clear
%%   ERL_FLAGS="..." escript ejabberd-mam.escript NODE fill HOST OWNER PEER N
-mode(compile).

main([NodeS, "fill", HostS, OwnerS, PeerS, NS]) ->
    Node = connect(NodeS),
    [Host, Owner, Peer] = [list_to_binary(X) || X <- [HostS, OwnerS, PeerS]],
    N = list_to_integer(NS),
    T0 = erlang:monotonic_time(millisecond),
    Now = erlang:system_time(microsecond),
    Res = <<"fill">>,
    Records = lists:flatmap(
        fun(I) ->
            Us = Now - (N - I) * 1000000,
            Id = integer_to_binary(Us),
            Ts = {Us div 1000000000000, Us div 1000000 rem 1000000, Us rem 1000000},
            IB = integer_to_binary(I),
            Body = <<IB/binary, " archived message number ", IB/binary>>,
            Packet = {xmlel, <<"message">>,
                      [{<<"xmlns">>, <<"jabber:client">>},
                       {<<"from">>, <<Peer/binary, "@", Host/binary, "/fill">>},
                       {<<"to">>, <<Owner/binary, "@", Host/binary, "/fill">>},
                       {<<"type">>, <<"chat">>}, {<<"id">>, <<"f", IB/binary>>}],
                      [{xmlel, <<"body">>, [], [{xmlcdata, Body}]}]},
            [{archive_msg, {Owner, Host}, Id, Ts, {Peer, Host, Res}, {Peer, Host, <<>>},
              Packet, <<>>, chat},
             {archive_msg, {Peer, Host}, Id, Ts, {Owner, Host, Res}, {Owner, Host, <<>>},
              Packet, <<>>, chat}]
        end, lists:seq(1, N)),
    write(Node, Records),
    io:format("ejabberd archive: ~b records in ~.2f s~n",
              [length(Records), (erlang:monotonic_time(millisecond) - T0) / 1000]);
main([NodeS, Cmd]) ->
    Node = connect(NodeS),
    case Cmd of
        "count" ->
            case rpc:call(Node, mnesia, table_info, [archive_msg, size]) of
                N when is_integer(N) -> io:format("~b~n", [N]);
                Bad -> fail("counting archive_msg failed: ~p", [Bad])
            end;
        "clear" ->
            case rpc:call(Node, mnesia, clear_table, [archive_msg]) of
                {atomic, ok} -> ok;
                Bad -> fail("clearing archive_msg failed: ~p", [Bad])
            end;
        _ -> fail("unknown command ~s (count, clear)", [Cmd])
    end;
main(_) ->
    fail("usage: ejabberd-mam.escript NODE count|clear, or NODE fill HOST OWNER PEER N", []).

connect(NodeS) ->
    Node = list_to_atom(NodeS),
    pong == net_adm:ping(Node) orelse fail("cannot reach node ~s", [NodeS]),
    Node.

write(_Node, []) -> ok;
write(Node, Records) ->
    {Batch, Rest} = lists:split(min(5000, length(Records)), Records),
    % An external fun (fun M:F/A) is only a name: it runs on the node.
    case rpc:call(Node, lists, foreach, [fun mnesia:dirty_write/1, Batch]) of
        ok -> write(Node, Rest);
        Bad -> fail("writing archive records failed: ~p", [Bad])
    end.

fail(Fmt, Args) ->
    io:format(standard_error, "ejabberd-mam: " ++ Fmt ++ "~n", Args),
    halt(1).
