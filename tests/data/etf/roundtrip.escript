#!/usr/bin/env escript
%% Checks fastshard's ETF encoder against Erlang's own decoder, for
%% tests/test_etf.py (which runs it when `escript` is on PATH):
%%
%%     escript roundtrip.escript DIR
%%
%% For every DIR/NAME.etf (written by fastshard._etf.encode) it runs
%% binary_to_term(Bin, [safe]) (which also rejects atoms the VM does not
%% already know), checks that every map key is a binary (Discord closes the
%% connection with 4002 on atom keys), and writes the term back as
%% DIR/NAME.back (term_to_binary, OTP 26+ encoding) for the test to decode.
%% Prints one line per file: "ok NAME" or "error NAME REASON"; exits 1 on any error.
-mode(compile).

main([Dir]) ->
    Files = lists:sort(filelib:wildcard(filename:join(Dir, "*.etf"))),
    Results = [check(F) || F <- Files],
    case lists:all(fun(R) -> R =:= ok end, Results) of
        true -> halt(0);
        false -> halt(1)
    end;
main(_) ->
    io:format(standard_error, "usage: roundtrip.escript DIR~n", []),
    halt(2).

check(File) ->
    Name = filename:basename(File, ".etf"),
    {ok, Bin} = file:read_file(File),
    try binary_to_term(Bin, [safe]) of
        Term ->
            case bad_keys(Term) of
                [] ->
                    Back = filename:join(filename:dirname(File), Name ++ ".back"),
                    ok = file:write_file(Back, term_to_binary(Term, [{minor_version, 2}])),
                    io:format("ok ~s~n", [Name]),
                    ok;
                Keys ->
                    io:format("error ~s non-binary map keys ~p~n", [Name, Keys]),
                    error
            end
    catch
        Class:Reason ->
            io:format("error ~s binary_to_term failed ~p:~p~n", [Name, Class, Reason]),
            error
    end.

bad_keys(M) when is_map(M) ->
    [K || K <- maps:keys(M), not is_binary(K)] ++
        lists:append([bad_keys(V) || V <- maps:values(M)]);
bad_keys(L) when is_list(L) -> lists:append([bad_keys(X) || X <- L]);
bad_keys(T) when is_tuple(T) -> bad_keys(tuple_to_list(T));
bad_keys(_) -> [].
